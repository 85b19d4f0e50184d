"""A local folder as an object store (`file:///abs/path` or a plain path).

Safety: every key goes through `validate_key`, and its resolved real path (symlinks followed)
must stay inside the real path of the root, else `UnsafeKeyError`. Listing never descends into
directory symlinks (no cycles, no escape) and lists a file symlink only if it resolves to a
regular file inside the root. The check-then-open sequence is not atomic: the store protects
against hostile keys, not against a hostile process rewriting the folder concurrently.

Etag choice: a 128-bit BLAKE2b digest of `"{size}:{mtime_ns}"`. It is computed from `stat()`
alone, so listing a million files reads no file content, and any rewrite (including `put`,
which replaces the file) changes it. It is not a content hash: copying a folder to another
machine (new mtimes) changes every etag, and an edit that keeps both size and mtime_ns would go
unnoticed. The labeling flow uses it only to detect changed images.

Listing order is the filesystem's directory order (not sorted), so that a folder of a million
images is streamed without holding its names in memory.
"""

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, MutableSequence
from pathlib import Path
from typing import BinaryIO

from autolabel.storage.errors import (
    ObjectNotFoundError,
    StorageConfigError,
    StorageError,
    UnsafeKeyError,
)
from autolabel.storage.objectstore import (
    FilteredListing,
    KeyFilter,
    ObjectInfo,
    usable_listed_key,
)
from autolabel.storage.urls import validate_key

logger = logging.getLogger(__name__)

#: Name prefix of in-flight temporary files; listing skips them.
TMP_PREFIX = ".autolabel-tmp-"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `path` whole (see `_write_atomically`).

    Raises:
        OSError: The folder cannot be written.
    """
    _write_atomically(path, lambda out: out.write(data))


def _write_atomically(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Write `path` whole: `fill` writes a temporary file in its folder (named `TMP_PREFIX`...,
    which listings skip), synced, then renamed over `path`. A reader never sees half a file; a
    failed write leaves no temporary file.

    Raises:
        OSError: The folder cannot be written.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def local_etag(st: os.stat_result) -> str:
    """Etag of a local file from its stat result (see the module docstring)."""
    token = f"{st.st_size}:{st.st_mtime_ns}".encode()
    return hashlib.blake2b(token, digest_size=16).hexdigest()


class LocalStore(FilteredListing):
    """Objects stored as files under `root`; keys are `/`-separated paths relative to it."""

    def __init__(self, root: Path) -> None:
        """Create a store rooted at the absolute folder `root` (created on first `put`)."""
        if not root.is_absolute():
            raise StorageConfigError(f"expected an absolute root folder, got {str(root)!r}")
        self._root = root
        self._real_root = Path(os.path.realpath(root))

    @property
    def url(self) -> str:
        """`file://` URL of the root."""
        return self._root.as_uri()

    @property
    def root(self) -> Path:
        """The root folder as given."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def _path(self, key: str) -> Path:
        """Real path of `key`, guaranteed to be inside the real root."""
        validate_key(key)
        real = Path(os.path.realpath(self._real_root / key))
        if not real.is_relative_to(self._real_root) or real == self._real_root:
            raise UnsafeKeyError(f"key {key!r} resolves outside the store root through a symlink")
        return real

    def _io_error(self, op: str, key: str, exc: OSError) -> StorageError:
        if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            return ObjectNotFoundError(f"no object {key!r} in {self.url} ({op})")
        return StorageError(f"{op} {key!r} in {self.url} failed: {exc.strerror or exc}")

    def get(self, key: str) -> bytes:
        """Read the whole file."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise self._io_error("get", key, exc) from exc

    def open(self, key: str) -> BinaryIO:
        """Open the file for reading (buffered, binary); the caller closes it."""
        path = self._path(key)
        try:
            return path.open("rb")
        except OSError as exc:
            raise self._io_error("open", key, exc) from exc

    def head(self, key: str) -> ObjectInfo:
        """Size and etag of a regular file."""
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise self._io_error("head", key, exc) from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(f"no object {key!r} in {self.url} (not a regular file)")
        return ObjectInfo(key, st.st_size, local_etag(st))

    def exists(self, key: str) -> bool:
        """Whether a regular file exists at `key`."""
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Write atomically: a temporary file in the same folder, fsync, then `os.replace`.

        `content_type` is accepted for interface compatibility and ignored.
        """
        del content_type
        return self._write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Copy a local file into the store atomically (streamed, never fully in memory)."""
        try:
            source = path.open("rb")
        except OSError as exc:
            raise StorageError(f"cannot read source file {str(path)!r}: {exc.strerror}") from exc
        with source:
            return self._write(key, lambda out: shutil.copyfileobj(source, out, 1024 * 1024))

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> ObjectInfo:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, fill)
            st = target.stat()
        except OSError as exc:
            raise StorageError(f"put {key!r} in {self.url} failed: {exc.strerror or exc}") from exc
        return ObjectInfo(key, st.st_size, local_etag(st))

    def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._io_error("delete", key, exc) from exc

    def check(self) -> None:
        """Raise `StorageConfigError` unless the root is an existing, readable folder."""
        if not self._real_root.is_dir():
            raise StorageConfigError(f"local store root {self.url} is not an existing folder")
        if not os.access(self._real_root, os.R_OK | os.X_OK):
            raise StorageConfigError(f"local store root {self.url} is not readable")

    def _before_listing(self) -> None:
        """A listing of a missing or unreadable root fails (see `check`) rather than being empty."""
        self.check()

    def _list_under(self, start: str, key_filter: KeyFilter) -> Iterator[ObjectInfo]:
        """Stream matching files; order is the filesystem's."""
        stack = [start.rpartition("/")[0]]
        while stack:
            yield from self._scan_dir(stack.pop(), start, key_filter, stack)

    def _scan_dir(
        self, rel_dir: str, start: str, key_filter: KeyFilter, stack: MutableSequence[str]
    ) -> Iterator[ObjectInfo]:
        folder = self._real_root / rel_dir if rel_dir else self._real_root
        if rel_dir and os.path.realpath(folder) != str(folder):
            return  # the prefix runs through a symlink: listing never follows those
        try:
            entries = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot list {rel_dir!r} in {self.url}: {exc.strerror}") from exc
        with entries:
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX):
                    continue
                key = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    below = key + "/"
                    if below.startswith(start) or start.startswith(below):
                        stack.append(key)
                elif key_filter.matches(key) and key.startswith(start):
                    info = self._listed_info(key, entry)
                    if info is not None:
                        yield info

    def _listed_info(self, key: str, entry: os.DirEntry[str]) -> ObjectInfo | None:
        if not usable_listed_key(key, self.url):
            return None
        try:
            if entry.is_symlink():
                real = Path(os.path.realpath(entry.path))
                if not real.is_relative_to(self._real_root):
                    logger.debug("skipping symlink leaving %s: %r", self.url, key)
                    return None
                st = real.stat()
            else:
                st = entry.stat(follow_symlinks=False)
        except OSError:
            return None  # vanished or dangling since the directory was read
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, local_etag(st))
