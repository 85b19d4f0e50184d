"""Key rules, glob matching, listing filters and `open_store` URL parsing."""

import fnmatch
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolabel.storage.errors import StorageConfigError, UnsafeKeyError
from autolabel.storage.objectstore import KeyFilter, compile_glob, open_store
from autolabel.storage.s3 import S3Store
from autolabel.storage.urls import validate_key


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*.jpg", "a.jpg", True),
        ("*.jpg", "dir/a.jpg", False),
        ("dir/*.jpg", "dir/a.jpg", True),
        ("**/*.jpg", "a.jpg", True),
        ("**/*.jpg", "x/y/z/a.jpg", True),
        ("a/**/b.png", "a/b.png", True),
        ("a/**/b.png", "a/x/y/b.png", True),
        ("a/**/b.png", "ab.png", False),
        ("a/**", "a/x/y", True),
        ("a/**", "b/x", False),
        ("img_??.png", "img_01.png", True),
        ("img_??.png", "img_1.png", False),
        ("img_[0-4].png", "img_3.png", True),
        ("img_[!0-4].png", "img_3.png", False),
        ("img_[!0-4].png", "img_7.png", True),
        ("a[/]b", "a/b", False),
        ("a.b+c(d)", "a.b+c(d)", True),
        ("a.b", "axb", False),
        ("[unclosed", "[unclosed", True),
    ],
)
def test_compile_glob(pattern: str, key: str, expected: bool) -> None:
    assert (compile_glob(pattern).match(key) is not None) is expected


@given(st.text(alphabet="ab.-_", max_size=8), st.text(alphabet="ab.-_*?", max_size=6))
def test_glob_agrees_with_fnmatch_on_single_segments(key: str, pattern: str) -> None:
    expected = re.match(fnmatch.translate(pattern), key, re.DOTALL) is not None
    assert (compile_glob(pattern).match(key) is not None) is expected


def test_key_filter_list_prefix() -> None:
    assert KeyFilter.build("", None, "images/2024/*.jpg").list_prefix == "images/2024/"
    assert KeyFilter.build("images/", None, "**/*.jpg").list_prefix == "images/"
    assert KeyFilter.build("images/20", None, "images/*").list_prefix == "images/20"
    assert KeyFilter.build("other/", None, "images/*").list_prefix is None


def test_key_filter_suffixes_are_case_insensitive() -> None:
    key_filter = KeyFilter.build("", [".JPG", ".png"], None)
    assert key_filter.matches("a.jpg")
    assert key_filter.matches("b.PNG")
    assert not key_filter.matches("c.webp")
    with pytest.raises(TypeError, match="sequence of suffixes"):
        KeyFilter.build("", ".jpg", None)


@pytest.mark.parametrize("key", ["a.jpg", "dir/sub/a b.jpg", "ünïcode/名前.png", "a:b@c=d.jpg"])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["..", "a/../b", "/abs", "a\\b", "a\x00", "a//b", "a/.", ""])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        validate_key(key)


def test_open_store_s3_forms() -> None:
    store = open_store("s3://my-bucket/data/images")
    assert isinstance(store, S3Store)
    assert store.url == "s3://my-bucket/data/images"
    assert open_store("s3://my-bucket").url == "s3://my-bucket"
    assert open_store("s3://my-bucket/").url == "s3://my-bucket"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("gs://bucket/x", r"'gs'.*file://, s3://"),
        ("http://host/x", "'http'"),
        ("s3://AKIAEXAMPLE:wJalrXUtnSECRET@bucket/x", "must not contain credentials"),
        ("s3://bucket/x?X-Amz-Signature=deadbeef", "query string"),
        ("s3://bucket/../x", "invalid prefix"),
        ("s3://B!/x", "bucket name"),
        ("s3:///x", "bucket name"),
        ("file://otherhost/x", "file:///absolute/path"),
        ("", "empty"),
    ],
)
def test_open_store_rejects(url: str, match: str) -> None:
    with pytest.raises(StorageConfigError, match=match) as info:
        open_store(url)
    assert "wJalrXUtnSECRET" not in str(info.value)
    assert "deadbeef" not in str(info.value)
