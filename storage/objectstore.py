"""The object-store interface shared by the local-folder and S3 stores, key rules and `open_store`.

Keys are untrusted input (they come from listings, manifests, tar members and users). Every store
validates them with `validate_key` before use: a key is a relative, `/`-separated path of
non-empty segments, none of them `.` or `..`, without backslashes or NUL, at most 1024 UTF-8
bytes (S3's limit). The same rules apply on S3 so that a key that works in one store works in
the other, and so that S3-compatible servers that normalise paths cannot be steered elsewhere.
"""

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from autolabel.storage.errors import UnsafeKeyError
from autolabel.storage.urls import parse_store_root, validate_key, validate_prefix

if TYPE_CHECKING:
    from autolabel.storage.config import S3Config

logger = logging.getLogger(__name__)

_GLOB_SPECIALS = "*?["


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Identity of one stored object.

    Attributes:
        key: Key relative to the store root, `/`-separated.
        size: Size in bytes.
        etag: Opaque content identity; changes when the object is rewritten (S3 ETag without
            quotes; for local files see `autolabel.storage.local`).
    """

    key: str
    size: int
    etag: str


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of byte objects under a root (a local folder or an S3 bucket/prefix)."""

    @property
    def url(self) -> str:
        """Root URL, safe to log: no credentials, no query string."""
        ...

    def list(
        self,
        prefix: str = "",
        *,
        suffixes: Sequence[str] | None = None,
        pattern: str | None = None,
    ) -> Iterator[ObjectInfo]:
        """Stream the objects under `prefix` (a plain string prefix of the key), page by page.

        Args:
            prefix: Keys must start with this string (relative to the store root).
            suffixes: Keep keys ending with one of these, compared case-insensitively.
            pattern: Keep keys matching this glob (see `compile_glob`), relative to the root.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the whole object; `ObjectNotFoundError` when it does not exist."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; the caller closes it."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Write the object, replacing any previous version; readers never see partial data."""
        ...

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Upload a local file (multipart on S3 above the configured threshold)."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Return size and etag without reading the object."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error (as on S3)."""
        ...

    def check(self) -> None:
        """Verify the root is reachable; `StorageConfigError` with a one-line reason if not."""
        ...


def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a key glob into an anchored regular expression.

    `*` matches within one path segment, `?` one character of a segment, `[abc]`/`[!abc]` a
    character class, and a whole-segment `**` any number of segments (`a/**/b.jpg` matches
    `a/b.jpg` and `a/x/y/b.jpg`; a trailing `/**` matches everything below).
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        token, i = _glob_token(pattern, i)
        out.append(token)
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _glob_token(pattern: str, i: int) -> tuple[str, int]:
    at_segment_start = i == 0 or pattern[i - 1] == "/"
    if at_segment_start and pattern.startswith("**/", i):
        return "(?:[^/]*/)*", i + 3
    if at_segment_start and pattern.startswith("**", i) and i + 2 == len(pattern):
        return ".*", i + 2
    char = pattern[i]
    if char == "*":
        while i < len(pattern) and pattern[i] == "*":
            i += 1
        return "[^/]*", i
    if char == "?":
        return "[^/]", i + 1
    if char == "[":
        end = pattern.find("]", i + 2)
        if end != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("[", "\\[")
            body = "\\" + body if body.startswith("^") else body
            return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), end + 1
    return re.escape(char), i + 1


@dataclass(frozen=True)
class KeyFilter:
    """The prefix, suffix and glob conditions of one `ObjectStore.list` call."""

    prefix: str = ""
    suffixes: tuple[str, ...] | None = None
    pattern: str | None = None

    @classmethod
    def build(cls, prefix: str, suffixes: Sequence[str] | None, pattern: str | None) -> "KeyFilter":
        """Validate the arguments of `ObjectStore.list` into a filter."""
        if isinstance(suffixes, str):
            raise TypeError(f"expected a sequence of suffixes, got the string {suffixes!r}")
        lowered = None if suffixes is None else tuple(s.lower() for s in suffixes)
        return cls(validate_prefix(prefix), lowered, pattern)

    @cached_property
    def _regex(self) -> re.Pattern[str] | None:
        return None if self.pattern is None else compile_glob(self.pattern)

    @cached_property
    def list_prefix(self) -> str | None:
        """The longest prefix every matching key has; None when no key can match."""
        literal = ""
        if self.pattern is not None:
            cut = min((i for i in map(self.pattern.find, _GLOB_SPECIALS) if i != -1), default=-1)
            literal = self.pattern if cut == -1 else self.pattern[:cut]
        if literal.startswith(self.prefix):
            return literal
        if self.prefix.startswith(literal):
            return self.prefix
        return None

    def matches(self, key: str) -> bool:
        """Whether `key` (relative to the store root) passes every condition."""
        if not key.startswith(self.prefix):
            return False
        if self.suffixes is not None and not key.lower().endswith(self.suffixes):
            return False
        return self._regex is None or self._regex.match(key) is not None


class FilteredListing:
    """`ObjectStore.list` shared by the stores: the arguments become a `KeyFilter`, and the store
    streams the objects under the narrowest prefix that filter allows (`_list_under`)."""

    def list(
        self,
        prefix: str = "",
        *,
        suffixes: Sequence[str] | None = None,
        pattern: str | None = None,
    ) -> Iterator[ObjectInfo]:
        """Stream the matching objects; see `ObjectStore.list`."""
        key_filter = KeyFilter.build(prefix, suffixes, pattern)
        self._before_listing()
        start = key_filter.list_prefix
        if start is not None:
            yield from self._list_under(start, key_filter)

    def _before_listing(self) -> None:
        """Runs once the listing arguments are valid, before any matching; nothing by default."""

    def _list_under(self, start: str, key_filter: KeyFilter) -> Iterator[ObjectInfo]:
        """Stream the objects whose keys start with `start` and pass `key_filter`."""
        raise NotImplementedError


def usable_listed_key(key: str, store_url: str) -> bool:
    """Whether a key found by a listing passes `validate_key`; logs and skips it otherwise.

    A listing meets names written by other tools; one unusable name must not end the listing.
    """
    try:
        validate_key(key)
    except UnsafeKeyError:
        logger.warning("skipping an object with an unusable key in %s: %r", store_url, key)
        return False
    return True


def open_store(url: str, *, s3: "S3Config | None" = None) -> ObjectStore:
    """Open the store rooted at `url`.

    Accepts `file:///abs/path`, a plain local path (relative paths are made absolute), and
    `s3://bucket[/prefix]`. Opening is cheap and does not touch the network: a missing bucket
    or folder surfaces as `StorageConfigError` from `check()` or from the first operation.

    Args:
        url: Store root. Must not contain credentials, a query string or a fragment.
        s3: S3 client settings (endpoint, region, retries...); defaults to `S3Config()`.

    Raises:
        StorageConfigError: Unknown scheme or malformed URL (the message never echoes
            credentials or query strings).
    """
    root = parse_store_root(url)
    if root.scheme == "s3":
        from autolabel.storage.config import S3Config
        from autolabel.storage.s3 import S3Store

        return S3Store(root.bucket, root.prefix, config=s3 or S3Config())
    return _local(root.path)


def _local(path: Path) -> ObjectStore:
    from autolabel.storage.local import LocalStore

    return LocalStore(path.expanduser().absolute())
