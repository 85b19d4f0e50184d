"""Stream the regular-file members of a tar archive (plain, gzip, bzip2 or xz) as bytes.

Nothing is extracted: member names are returned as strings and never used as filesystem paths,
so `../`, absolute or link members cannot write anywhere. Directories, symlinks, hard links and
device entries are skipped. The archive is read once, front to back, from any binary stream
(`ObjectStore.open(key)`, a local file), in constant memory apart from the current member.

A truncated or damaged archive raises `FormatError` naming the archive, including a tar cut at a
member boundary (Python's `tarfile` would silently stop there; the end-of-archive marker of
zero blocks is required here). A compressed archive cut inside the compressor's trailer, after
every member and the end marker were read, is accepted: its content is complete.
"""

import lzma
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self, cast

from autolabel.storage.errors import FormatError

#: Largest member read into memory by default (SA-1B images are a few MiB).
DEFAULT_MAX_MEMBER_BYTES = 1024 * 1024 * 1024
_DAMAGE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


class _BrokenArchiveError(Exception):
    """A header that is neither a member nor the end-of-archive marker."""


class _StrictTarInfo(tarfile.TarInfo):
    """TarInfo that reports missing/garbled headers instead of treating them as the end."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as exc:
            if type(exc).__name__ == "EOFHeaderError":
                raise  # a zero block: the archive's proper end
            raise _BrokenArchiveError(f"{type(exc).__name__}: {exc}") from exc


def iter_tar(
    source: Path | BinaryIO,
    *,
    name: str | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> Iterator[tuple[str, bytes]]:
    """Yield `(member name, content)` for each regular file, in archive order.

    Args:
        source: A local archive path, or a readable binary stream (not closed here).
        name: How to name the archive in errors (default: the path, or "<tar stream>").
        max_member_bytes: Larger members raise `FormatError` instead of being read.

    Raises:
        FormatError: Truncated, damaged or non-tar input, or an oversized member.
    """
    label = name or (str(source) if isinstance(source, Path) else "<tar stream>")
    if isinstance(source, Path):
        with source.open("rb") as stream:
            yield from _iter_stream(stream, label, max_member_bytes)
    else:
        yield from _iter_stream(source, label, max_member_bytes)


def _iter_stream(
    stream: BinaryIO, label: str, max_member_bytes: int
) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_StrictTarInfo) as archive:
            for member in archive:
                # Stream mode otherwise keeps every header: O(members) memory on huge shards.
                cast(Any, archive).members.clear()
                if not member.isreg():
                    continue
                if member.size > max_member_bytes:
                    raise FormatError(
                        f"tar {label}: member {member.name!r} is {member.size} bytes, "
                        f"expected at most {max_member_bytes}"
                    )
                extracted = archive.extractfile(member)
                if extracted is None:
                    continue
                yield member.name, extracted.read()
    except FormatError:
        raise
    except (*_DAMAGE, _BrokenArchiveError, TypeError, ValueError) as exc:
        # TypeError/ValueError: tarfile's own parsing of a cut compression header.
        raise FormatError(f"tar {label} is truncated or damaged: {exc}") from exc
