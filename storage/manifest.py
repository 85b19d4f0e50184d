"""Manifests: an explicit list of images, as an alternative to listing a store.

A manifest is UTF-8 text, read line by line as a stream (a million lines never sit in memory):

    # comment lines and blank lines are ignored
    images/0001.jpg                      a key, relative to the store the manifest is used with
    s3://bucket/images/0002.jpg          a URL: s3://bucket/key or file:///abs/path
    {"key": "images/0003.jpg"}           JSON Lines: an object with exactly one of "key"/"url"
    {"url": "s3://bucket/x.png", "id": 7}   (other fields are ignored)

Keys obey the object-store key rules (`validate_key`); URLs must not carry credentials, query
strings or fragments (no presigned URLs in manifests, they would end up in the database and
logs). Any bad line raises `FormatError` naming the manifest and the 1-based line number.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from autolabel.storage.errors import FormatError, StorageError
from autolabel.storage.urls import check_object_url, validate_key

ManifestFormat = Literal["auto", "text", "jsonl"]
MAX_LINE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One image reference.

    Attributes:
        line: 1-based line number in the manifest.
        key: Key relative to the store the manifest is used with, or None.
        url: Absolute `s3://` or `file://` URL, or None. Exactly one of key/url is set.
    """

    line: int
    key: str | None = None
    url: str | None = None

    @property
    def ref(self) -> str:
        """The key or URL, as written (after trimming)."""
        return self.key if self.key is not None else str(self.url)


def read_manifest(
    source: Path | BinaryIO,
    *,
    name: str | None = None,
    fmt: ManifestFormat = "auto",
) -> Iterator[ManifestEntry]:
    """Stream the entries of a manifest.

    Args:
        source: A local file, or a readable binary stream such as `ObjectStore.open(key)`
            (not closed here).
        name: How to name the manifest in errors (default: the path or "<manifest>").
        fmt: "text" (one key or URL per line), "jsonl" (one JSON object per line) or "auto"
            (a line starting with `{` is JSON, any other line is a key or URL).

    Raises:
        FormatError: A bad line (undecodable, too long, invalid JSON, unsafe key, bad URL).
    """
    label = name or (str(source) if isinstance(source, Path) else "<manifest>")
    if isinstance(source, Path):
        try:
            stream = source.open("rb")
        except OSError as exc:
            raise StorageError(f"cannot read manifest {label}: {exc.strerror}") from exc
        with stream:
            yield from _entries(stream, label, fmt)
    else:
        yield from _entries(source, label, fmt)


def _entries(stream: BinaryIO, label: str, fmt: ManifestFormat) -> Iterator[ManifestEntry]:
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise FormatError(f"manifest {label} line {number}: longer than {MAX_LINE_BYTES} bytes")
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError as exc:
            raise FormatError(f"manifest {label} line {number}: not UTF-8 ({exc.reason})") from exc
        if not text or text.startswith("#"):
            continue
        try:
            yield _parse_line(text, number, fmt)
        except (FormatError, StorageError) as exc:
            raise FormatError(f"manifest {label} line {number}: {exc}") from exc


def _parse_line(text: str, number: int, fmt: ManifestFormat) -> ManifestEntry:
    if fmt == "jsonl" or (fmt == "auto" and text.startswith("{")):
        return _parse_json(text, number)
    if "://" in text:
        return ManifestEntry(number, url=check_object_url(text))
    return ManifestEntry(number, key=validate_key(text))


def _parse_json(text: str, number: int) -> ManifestEntry:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise FormatError(f"expected a JSON object, got {type(record).__name__}")
    present = [field for field in ("key", "url") if field in record]
    if len(present) != 1:
        raise FormatError(f'expected exactly one of "key" or "url", got {present or "neither"}')
    value = record[present[0]]
    if not isinstance(value, str) or not value:
        raise FormatError(f'expected "{present[0]}" to be a non-empty string, got {value!r:.80}')
    if present[0] == "url":
        return ManifestEntry(number, url=check_object_url(value))
    return ManifestEntry(number, key=validate_key(value))
