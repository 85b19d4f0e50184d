"""LocalStore: object operations, atomic writes, key safety and streaming listing."""

import os
from pathlib import Path

import pytest

from autolabel.storage.errors import (
    ObjectNotFoundError,
    StorageConfigError,
    StorageError,
    UnsafeKeyError,
)
from autolabel.storage.local import TMP_PREFIX, LocalStore
from autolabel.storage.objectstore import ObjectStore, open_store


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    root = tmp_path / "root"
    root.mkdir()
    return LocalStore(root)


def test_is_an_object_store(store: LocalStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.url == store.root.as_uri()


def test_put_get_head_roundtrip(store: LocalStore) -> None:
    info = store.put("a/b/c.jpg", b"hello")
    assert (info.key, info.size) == ("a/b/c.jpg", 5)
    assert store.get("a/b/c.jpg") == b"hello"
    assert store.head("a/b/c.jpg") == info
    assert store.exists("a/b/c.jpg")
    with store.open("a/b/c.jpg") as stream:
        assert stream.read(2) == b"he"
        assert stream.read() == b"llo"
    assert (store.root / "a" / "b" / "c.jpg").read_bytes() == b"hello"


def test_put_replaces_and_changes_etag(store: LocalStore) -> None:
    first = store.put("x.bin", b"one")
    second = store.put("x.bin", b"second")
    assert store.get("x.bin") == b"second"
    assert first.etag != second.etag
    assert store.head("x.bin").etag == second.etag
    assert store.head("x.bin").etag == store.head("x.bin").etag


def test_put_leaves_no_temporary_files(store: LocalStore) -> None:
    store.put("d/x.bin", b"1")
    assert [p.name for p in (store.root / "d").iterdir()] == ["x.bin"]


def test_failed_put_keeps_old_content_and_cleans_up(store: LocalStore) -> None:
    store.put("d/x.bin", b"old")

    def explode(out: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(StorageError, match=r"put 'd/x\.bin'.*No space left"):
        store._write("d/x.bin", explode)
    assert store.get("d/x.bin") == b"old"
    assert not [p for p in (store.root / "d").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_put_file_streams_a_copy(store: LocalStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    payload = os.urandom(3 * 1024 * 1024 + 7)
    source.write_bytes(payload)
    info = store.put_file("weights/big.bin", source)
    assert info.size == len(payload)
    assert store.get("weights/big.bin") == payload


def test_missing_objects(store: LocalStore) -> None:
    with pytest.raises(ObjectNotFoundError):
        store.get("nope.jpg")
    with pytest.raises(ObjectNotFoundError):
        store.head("nope.jpg")
    with pytest.raises(ObjectNotFoundError):
        store.open("nope.jpg")
    assert not store.exists("nope.jpg")
    store.put("dir/file", b"1")
    with pytest.raises(ObjectNotFoundError):
        store.get("dir")  # a folder is not an object
    assert not store.exists("dir")


def test_delete_is_idempotent(store: LocalStore) -> None:
    store.put("k", b"1")
    store.delete("k")
    assert not store.exists("k")
    store.delete("k")


@pytest.mark.parametrize(
    "key",
    [
        "../outside.txt",
        "a/../../outside.txt",
        "a/..",
        "/etc/passwd",
        "a\\..\\b",
        "a\x00b",
        "",
        "a//b",
        "./a",
        "a/",
        "x" * 1025,
        "bad\udcffname",
    ],
)
def test_unsafe_keys_are_rejected_everywhere(store: LocalStore, key: str) -> None:
    for call in (store.get, store.head, store.exists, store.delete, store.open):
        with pytest.raises(UnsafeKeyError):
            call(key)
    with pytest.raises(UnsafeKeyError):
        store.put(key, b"x")


def test_symlink_out_of_root_is_rejected(store: LocalStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (store.root / "link.txt").symlink_to(secret)
    (store.root / "dirlink").symlink_to(outside_dir)
    with pytest.raises(UnsafeKeyError, match="outside the store root"):
        store.get("link.txt")
    with pytest.raises(UnsafeKeyError):
        store.put("dirlink/new.txt", b"escape")
    assert not (outside_dir / "new.txt").exists()
    with pytest.raises(UnsafeKeyError):
        store.head("dirlink")


def test_symlink_inside_root_is_allowed(store: LocalStore) -> None:
    store.put("real/a.jpg", b"data")
    (store.root / "alias.jpg").symlink_to(store.root / "real" / "a.jpg")
    assert store.get("alias.jpg") == b"data"
    assert "alias.jpg" in {info.key for info in store.list()}


def test_listing_filters_and_never_leaves_root(store: LocalStore, tmp_path: Path) -> None:
    for key in ["a/1.JPG", "a/2.png", "a/sub/3.jpg", "ab.jpg", "b/4.jpg", "c.txt"]:
        store.put(key, key.encode())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.jpg").write_bytes(b"leak")
    (store.root / "escape").symlink_to(outside)
    (store.root / "leak.jpg").symlink_to(outside / "leak.jpg")
    (store.root / "loop").symlink_to(store.root)
    (store.root / f"{TMP_PREFIX}partial").write_bytes(b"")

    def keys(**kwargs: object) -> list[str]:
        return sorted(info.key for info in store.list(**kwargs))  # type: ignore[arg-type]

    assert keys() == ["a/1.JPG", "a/2.png", "a/sub/3.jpg", "ab.jpg", "b/4.jpg", "c.txt"]
    assert keys(prefix="a") == ["a/1.JPG", "a/2.png", "a/sub/3.jpg", "ab.jpg"]
    assert keys(prefix="a/") == ["a/1.JPG", "a/2.png", "a/sub/3.jpg"]
    assert keys(suffixes=[".jpg"]) == ["a/1.JPG", "a/sub/3.jpg", "ab.jpg", "b/4.jpg"]
    assert keys(pattern="a/*.jpg") == []
    assert keys(pattern="a/*.JPG") == ["a/1.JPG"]
    assert keys(pattern="**/*.jpg") == ["a/sub/3.jpg", "ab.jpg", "b/4.jpg"]
    assert keys(pattern="a/**") == ["a/1.JPG", "a/2.png", "a/sub/3.jpg"]
    assert keys(prefix="b/", pattern="a/**") == []
    assert keys(prefix="escape/") == []
    assert keys(pattern="escape/*.jpg") == []
    assert keys(prefix="loop/a/") == []
    sizes = {info.key: info.size for info in store.list()}
    assert sizes["a/sub/3.jpg"] == len(b"a/sub/3.jpg")


def test_listing_is_lazy(store: LocalStore) -> None:
    for i in range(50):
        store.put(f"d{i % 5}/{i}.jpg", b"x")
    iterator = store.list()
    first = next(iterator)
    assert first.key.endswith(".jpg")
    assert len(list(iterator)) == 49


def test_listing_a_missing_root_is_a_config_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "does-not-exist")
    with pytest.raises(StorageConfigError, match="not an existing folder"):
        list(store.list())
    with pytest.raises(StorageConfigError):
        store.check()
    store.put("new.txt", b"1")  # writing creates the root
    store.check()


def test_unsafe_listing_prefix(store: LocalStore) -> None:
    with pytest.raises(UnsafeKeyError):
        list(store.list("../"))


def test_open_store_local_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_uri = open_store(tmp_path.as_uri())
    by_path = open_store(str(tmp_path))
    assert isinstance(by_uri, LocalStore)
    assert isinstance(by_path, LocalStore)
    assert by_uri.url == by_path.url == tmp_path.as_uri()
    monkeypatch.chdir(tmp_path)
    assert open_store("rel/folder").url == (tmp_path / "rel" / "folder").as_uri()
    spaced = tmp_path / "with space"
    assert open_store(spaced.as_uri()).url == spaced.as_uri()
