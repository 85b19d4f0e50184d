"""read_manifest: text and JSON Lines entries, comments, line-numbered errors, URL splitting."""

import io
from pathlib import Path

import pytest

from autolabel.storage.errors import FormatError
from autolabel.storage.local import LocalStore
from autolabel.storage.manifest import ManifestEntry, read_manifest
from autolabel.storage.objectstore import open_store
from autolabel.storage.urls import split_object_url

MIXED = b"""\xef\xbb\xbf# images for run 7
images/0001.jpg

  images/0002.png  \r
s3://bucket/raw/0003.jpg
file:///data/raw/0004.jpg
{"key": "images/0005.jpg", "id": 5}
{"url": "s3://other-bucket/x/0006.jpg"}
   # indented comment
"""


def test_mixed_manifest_entries() -> None:
    entries = list(read_manifest(io.BytesIO(MIXED)))
    assert entries == [
        ManifestEntry(2, key="images/0001.jpg"),
        ManifestEntry(4, key="images/0002.png"),
        ManifestEntry(5, url="s3://bucket/raw/0003.jpg"),
        ManifestEntry(6, url="file:///data/raw/0004.jpg"),
        ManifestEntry(7, key="images/0005.jpg"),
        ManifestEntry(8, url="s3://other-bucket/x/0006.jpg"),
    ]
    assert [e.ref for e in entries][:2] == ["images/0001.jpg", "images/0002.png"]


def test_manifest_from_path_and_store(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(MIXED)
    assert len(list(read_manifest(path))) == 6
    store = LocalStore(tmp_path)
    with store.open("list.txt") as stream:
        assert len(list(read_manifest(stream, name="list.txt"))) == 6


def test_manifest_is_streamed() -> None:
    lines = (f"images/{i:07d}.jpg\n".encode() for i in range(10**6))

    class Lines(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = next(lines, b"")
            buffer[: len(chunk)] = chunk
            return len(chunk)

    entries = read_manifest(io.BufferedReader(Lines()))
    assert next(entries) == ManifestEntry(1, key="images/0000000.jpg")
    assert next(entries).line == 2


@pytest.mark.parametrize(
    ("body", "line", "match"),
    [
        (b"ok.jpg\n../etc/passwd\n", 2, "line 2: .*'\\.\\.'"),
        (b"ok.jpg\n\n/abs/path.jpg\n", 3, "line 3: .*absolute"),
        (b'{"key": "a.jpg"\n', 1, "line 1: invalid JSON"),
        (b'ok.jpg\n{"key": 3}\n', 2, "non-empty string"),
        (b'{"key": "a", "url": "s3://b/a"}\n', 1, "exactly one"),
        (b'{"name": "a.jpg"}\n', 1, "neither"),
        (b"http://example.com/a.jpg\n", 1, "scheme 'http'"),
        (b"s3://bucket/a.jpg?X-Amz-Signature=abc\n", 1, "presigned"),
        (b"s3://AKIA:secret@bucket/a.jpg\n", 1, "credentials"),
        (b"s3:///a.jpg\n", 1, "no bucket"),
        (b"file://host/a.jpg\n", 1, "file:///absolute"),
        (b"file:///data/../etc/passwd\n", 1, r"'\.\.'"),
        (b"ok.jpg\n\xff\xfe.jpg\n", 2, "not UTF-8"),
        (b"a" * 20_000 + b"\n", 1, "longer than"),
    ],
)
def test_bad_lines_name_the_line(body: bytes, line: int, match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        list(read_manifest(io.BytesIO(body), name="m.txt"))
    assert f"manifest m.txt line {line}:" in str(info.value)
    assert "secret" not in str(info.value)
    assert "X-Amz-Signature" not in str(info.value)


def test_jsonl_format_is_strict_and_text_format_is_literal() -> None:
    with pytest.raises(FormatError, match="line 1: invalid JSON"):
        list(read_manifest(io.BytesIO(b"images/a.jpg\n"), fmt="jsonl"))
    with pytest.raises(FormatError, match="line 2: expected a JSON object, got list"):
        list(read_manifest(io.BytesIO(b"# c\n[1, 2]\n"), fmt="jsonl"))
    entries = list(read_manifest(io.BytesIO(b"{odd}.jpg\n"), fmt="text"))
    assert entries == [ManifestEntry(1, key="{odd}.jpg")]


def test_split_url_opens_the_right_object(tmp_path: Path) -> None:
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "img 1.jpg").write_bytes(b"pixels")
    root, key = split_object_url((tmp_path / "a b" / "img 1.jpg").as_uri())
    assert key == "img 1.jpg"
    assert open_store(root).get(key) == b"pixels"
    assert split_object_url("s3://bucket/x/y.jpg") == ("s3://bucket", "x/y.jpg")
    with pytest.raises(FormatError):
        split_object_url("s3://bucket/x.jpg?sig=1")
