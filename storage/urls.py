"""Storage URLs and keys: the one place that parses, checks, joins and splits them.

Two kinds of URL name storage:
- a **store root**: `file:///abs/folder`, a plain local path, or `s3://bucket[/prefix]`
  (`parse_store_root`, used by `open_store` and the settings);
- an **object URL**: `s3://bucket/key` or `file:///abs/path/name` (`check_object_url`,
  `split_object_url`), as stored in the database for every image and written by manifests.

Keys are untrusted input (listings, manifests, tar members, users): `validate_key` accepts a
relative, `/`-separated path of non-empty segments, none of them `.` or `..`, without backslashes
or NUL, at most 1024 UTF-8 bytes (S3's limit). No message repeats credentials or query strings.
"""

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from autolabel.storage.errors import FormatError, StorageConfigError, UnsafeKeyError

MAX_KEY_BYTES = 1024
STORE_SCHEMES = ("file", "s3")


def _short(key: str) -> str:
    return repr(key if len(key) <= 200 else key[:200] + "...")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe relative key, else raise `UnsafeKeyError`."""
    if not isinstance(key, str) or not key:
        raise UnsafeKeyError(f"expected a non-empty string key, got {key!r}")
    if "\x00" in key or "\\" in key:
        raise UnsafeKeyError(f"key must not contain NUL or backslash, got {_short(key)}")
    if key.startswith("/"):
        raise UnsafeKeyError(f"expected a relative key, got absolute {_short(key)}")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeKeyError(f"key is not valid UTF-8 text: {_short(key)}") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise UnsafeKeyError(f"key longer than {MAX_KEY_BYTES} bytes: {_short(key)}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnsafeKeyError(
                f"key segments must be non-empty and not '.' or '..', got {_short(key)}"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """Return a listing prefix if safe: empty, or a key that may end with `/`."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True, slots=True)
class StoreRoot:
    """A parsed store root.

    Attributes:
        scheme: "file" or "s3".
        bucket: The S3 bucket ("" for local folders).
        prefix: Key prefix inside the bucket, without a leading "/" ("" for local folders).
        path: The absolute local folder (unused for S3).
    """

    scheme: Literal["file", "s3"]
    bucket: str = ""
    prefix: str = ""
    path: Path = Path("/")


def parse_store_root(url: str) -> StoreRoot:
    """Parse a store root: `file:///abs/path`, a local path (made absolute) or `s3://bucket/p`.

    Raises:
        StorageConfigError: empty value, unknown scheme, credentials, query string, fragment,
            a file URL with a host, or an unsafe S3 prefix.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme:
        if not url.strip():
            raise StorageConfigError("expected a storage URL or local folder, got an empty string")
        return StoreRoot("file", path=Path(url).expanduser().absolute())
    if scheme not in STORE_SCHEMES:
        raise StorageConfigError(
            f"unsupported storage URL scheme {scheme!r}; expected one of "
            f"{', '.join(s + '://' for s in STORE_SCHEMES)} or a local path"
        )
    if parts.username is not None or parts.password is not None:
        raise StorageConfigError(
            f"{scheme}:// URL must not contain credentials; use the boto3 credential chain"
        )
    if parts.query or parts.fragment:
        raise StorageConfigError(f"{scheme}:// URL must not contain a query string or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StorageConfigError(
                f"expected file:///absolute/path, got host {parts.netloc!r} in a file:// URL"
            )
        return StoreRoot("file", path=Path(unquote(parts.path)).expanduser().absolute())
    if not parts.netloc:
        raise StorageConfigError("expected s3://bucket[/prefix], got no bucket name")
    prefix = parts.path.lstrip("/")
    try:
        validate_prefix(prefix)
    except UnsafeKeyError as exc:
        raise StorageConfigError(f"invalid prefix in s3:// URL: {exc}") from exc
    return StoreRoot("s3", bucket=parts.netloc, prefix=prefix)


def is_url(value: str) -> bool:
    """Whether `value` is written as a URL (`scheme://...`) rather than a local path."""
    return "://" in value


def is_store_url(value: str) -> bool:
    """Whether `value` is an `s3://` or `file://` URL (not `http://`, not a local path)."""
    return is_url(value) and value.split("://", 1)[0].lower() in STORE_SCHEMES


def check_object_url(url: str) -> str:
    """Return `url` if it is a plain `s3://bucket/key` or `file:///abs/path`, else FormatError."""
    parts = urlsplit(url)
    if parts.scheme not in STORE_SCHEMES:
        raise FormatError(f"expected an s3:// or file:// URL, got scheme {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise FormatError("URL must not contain credentials")
    if parts.query or parts.fragment:
        raise FormatError("URL must not contain a query string or fragment (no presigned URLs)")
    if parts.scheme == "s3":
        if not parts.netloc:
            raise FormatError("expected s3://bucket/key, got no bucket")
        validate_key(parts.path.lstrip("/"))
    elif parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise FormatError("expected file:///absolute/path")
    elif ".." in PurePosixPath(unquote(parts.path)).parts:
        raise FormatError("file:// URL must not contain '..' segments")
    return url


def split_object_url(url: str) -> tuple[str, str]:
    """Split an object URL into (store root URL, key) for `open_store(root).get(key)`.

    `s3://bucket/a/b.jpg` -> (`s3://bucket`, `a/b.jpg`); `file:///data/a/b.jpg` ->
    (`file:///data/a`, `b.jpg`): a file URL's store is its own folder, so its key cannot
    reach anything but that one file.
    """
    parts = urlsplit(check_object_url(url))
    if parts.scheme == "s3":
        return f"s3://{parts.netloc}", parts.path.lstrip("/")
    folder, _, file_name = parts.path.rpartition("/")
    return f"file://{folder or '/'}", unquote(file_name)


def join_url(root: str, key: str) -> str:
    """The URL of `key` in the store rooted at `root` (`s3://b/raw/` + `a.jpg`)."""
    return f"{root.rstrip('/')}/{key}"


def key_under(root: str, url: str) -> str | None:
    """The key of `url` relative to the store root `root`, or None when `url` is not below it."""
    base = root.rstrip("/") + "/"
    return url[len(base) :] if url.startswith(base) and len(url) > len(base) else None


def split_file_url(url: str) -> tuple[str, str]:
    """(folder URL, file name) of a URL naming one file to write, e.g. an export's JSON.

    Raises:
        StorageConfigError: the URL ends with `/` (no file name).
    """
    folder, _, name = url.rpartition("/")
    if not name or not folder or not is_url(url):
        raise StorageConfigError(f"expected a URL ending in a file name, got {url!r}")
    return folder, name
