"""An S3 bucket/prefix as an object store (AWS S3, MinIO, Ceph RGW, moto) through boto3.

Credentials come from boto3's chain (or an injected `boto3.Session`); they are never arguments,
never logged, and never part of an error message: errors carry the operation, the `s3://` URL of
the object, the endpoint (validated to hold no user info), the S3 error code and HTTP status,
nothing from the request itself. Presigned URLs are never created here.

Error mapping: 404/NoSuchKey -> `ObjectNotFoundError`; NoSuchBucket, access denied and missing
credentials -> `StorageConfigError`; throttling, 5xx, timeouts and dropped connections that are
still failing after botocore's adaptive retries -> `TransientStorageError`; anything else ->
`StorageError`. A missing bucket is reported on first use (opening a store makes no request),
or by `check()`. `head`/`exists` cannot tell a missing bucket from a missing key (S3 answers a
bare 404 to HEAD), so they report `ObjectNotFoundError`/False; `check()` tells them apart.
"""

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)

from autolabel.storage.config import S3Config
from autolabel.storage.errors import (
    ObjectNotFoundError,
    StorageConfigError,
    StorageError,
    TransientStorageError,
)
from autolabel.storage.objectstore import (
    FilteredListing,
    KeyFilter,
    ObjectInfo,
    usable_listed_key,
)
from autolabel.storage.urls import validate_key, validate_prefix

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId"})
_DENIED |= {"SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout"}
) | {"InternalError", "ServiceUnavailable", "RequestTimeTooSkewed", "TooManyRequestsException"}
_TRANSIENT_NETWORK = (ConnectionError, HTTPClientError, IncompleteReadError)


def botocore_config(config: S3Config) -> Config:
    """The botocore client configuration for `config` (adaptive retries, real timeouts)."""
    return Config(
        region_name=config.region,
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        retries={"mode": "adaptive", "max_attempts": config.max_attempts},
        s3={"addressing_style": "path" if config.path_style else "auto"},
        max_pool_connections=max(10, config.max_concurrency),
        # Many S3-compatible servers (older MinIO, Ceph) reject the CRC trailers that recent
        # botocore sends by default; send and check checksums only where S3 requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="autolabel",
    )


class S3Store(FilteredListing):
    """Objects under `s3://bucket/prefix`; keys are relative to the prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        config: S3Config,
        session: boto3.Session | None = None,
    ) -> None:
        """Create the client (no request is made).

        Args:
            bucket: Bucket name.
            prefix: Root prefix inside the bucket ("" for the whole bucket); a trailing `/` is
                added when missing.
            config: Endpoint, region, addressing, timeouts, retries, multipart sizes.
            session: boto3 session to take credentials from; default: a new default session.
        """
        if not _BUCKET_RE.match(bucket):
            raise StorageConfigError(
                f"expected an S3 bucket name (3-63 of a-z 0-9 . _ -), got {bucket[:80]!r}"
            )
        validate_prefix(prefix)
        self._bucket = bucket
        self._prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._config = config
        self._session = session = session or boto3.session.Session()
        self._client: S3Client = session.client(
            "s3", endpoint_url=config.endpoint_url, config=botocore_config(config)
        )
        where = f" at {config.endpoint_url}" if config.endpoint_url else ""
        self._where = f"{self.url}{where}"

    @property
    def url(self) -> str:
        """`s3://bucket/prefix` (no endpoint, no credentials)."""
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    def __repr__(self) -> str:
        return f"S3Store({self._where!r})"

    def _key(self, key: str) -> str:
        return self._prefix + validate_key(key)

    def _error(self, op: str, key: str | None, exc: Exception) -> StorageError:
        """Translate a boto3/botocore exception; never formats the exception text itself."""
        target = f"{self.url}/{key}" if key is not None else self._where
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, Exception):
            exc = exc.__context__
        if isinstance(exc, ClientError):
            return self._client_error(op, target, exc)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageConfigError(f"{op} {target}: no usable S3 credentials in boto3's chain")
        if isinstance(exc, _TRANSIENT_NETWORK):
            return TransientStorageError(
                f"{op} {target}: {type(exc).__name__} talking to the endpoint after retries"
            )
        return StorageError(f"{op} {target} failed: {type(exc).__name__}")

    def _client_error(self, op: str, target: str, exc: ClientError) -> StorageError:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"{code} (HTTP {status})"
        if code == "NoSuchBucket":
            return StorageConfigError(f"bucket {self._bucket!r} does not exist{self._at()}")
        if code in _NOT_FOUND:
            return ObjectNotFoundError(f"{op} {target}: no such object, {detail}")
        if code in _DENIED or status == 403:
            return StorageConfigError(f"{op} {target}: access denied, {detail}")
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientStorageError(f"{op} {target}: {detail} after retries")
        return StorageError(f"{op} {target} failed: {detail}")

    def _at(self) -> str:
        return f" at {self._config.endpoint_url}" if self._config.endpoint_url else ""

    def _list_under(self, start: str, key_filter: KeyFilter) -> Iterator[ObjectInfo]:
        """Stream matching objects page by page (1000 keys per request), in key order."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self._bucket,
            Prefix=self._prefix + start,
            PaginationConfig={"PageSize": 1000},
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    info = self._listed_info(item, key_filter)
                    if info is not None:
                        yield info
        except (BotoCoreError, ClientError) as exc:
            raise self._error("list", None, exc) from exc

    def _listed_info(self, item: Any, key_filter: KeyFilter) -> ObjectInfo | None:
        key = str(item["Key"])[len(self._prefix) :]
        if not key or key.endswith("/") or not key_filter.matches(key):
            return None  # folder markers ("dir/" zero-byte objects) are not objects here
        if not usable_listed_key(key, self.url):
            return None
        return ObjectInfo(key, int(item["Size"]), str(item.get("ETag", "")).strip('"'))

    def get(self, key: str) -> bytes:
        """Download the whole object."""
        full = self._key(key)
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=full)["Body"]
            with body:
                return body.read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error("get", key, exc) from exc

    def open(self, key: str) -> BinaryIO:
        """Start a GET and return its body as a buffered binary stream; the caller closes it."""
        full = self._key(key)
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=full)["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise self._error("open", key, exc) from exc
        return io.BufferedReader(_BodyReader(body, f"{self.url}/{key}"), 1024 * 1024)

    def head(self, key: str) -> ObjectInfo:
        """Size and ETag from a HEAD request."""
        full = self._key(key)
        try:
            meta = self._client.head_object(Bucket=self._bucket, Key=full)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("head", key, exc) from exc
        return ObjectInfo(key, int(meta["ContentLength"]), str(meta["ETag"]).strip('"'))

    def exists(self, key: str) -> bool:
        """Whether a HEAD request finds the object."""
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def put(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        """Upload `data` in one PUT (S3 PUTs are atomic: readers see the old or new object)."""
        full = self._key(key)
        try:
            if content_type:
                meta = self._client.put_object(
                    Bucket=self._bucket, Key=full, Body=data, ContentType=content_type
                )
            else:
                meta = self._client.put_object(Bucket=self._bucket, Key=full, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("put", key, exc) from exc
        return ObjectInfo(key, len(data), str(meta["ETag"]).strip('"'))

    def put_file(self, key: str, path: Path) -> ObjectInfo:
        """Upload a local file; multipart (parallel parts) at or above the configured threshold."""
        full = self._key(key)
        transfer = TransferConfig(
            multipart_threshold=self._config.multipart_threshold_bytes,
            multipart_chunksize=self._config.multipart_chunk_bytes,
            max_concurrency=self._config.max_concurrency,
        )
        if not path.is_file():
            raise StorageError(f"put_file {self.url}/{key}: source {str(path)!r} is not a file")
        try:
            self._client.upload_file(str(path), self._bucket, full, Config=transfer)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise self._error("put_file", key, exc) from exc
        return self.head(key)

    def delete(self, key: str) -> None:
        """Delete the object (S3 reports success for a missing key)."""
        full = self._key(key)
        try:
            self._client.delete_object(Bucket=self._bucket, Key=full)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("delete", key, exc) from exc

    def check(self) -> None:
        """HEAD the bucket; `StorageConfigError` with a one-line reason if it is not usable.

        Uses short timeouts and at most two attempts, so an unreachable endpoint is reported
        within seconds rather than after the full adaptive retry budget.
        """
        probe = self._session.client(
            "s3",
            endpoint_url=self._config.endpoint_url,
            config=botocore_config(self._config).merge(
                Config(
                    retries={"mode": "standard", "max_attempts": 2},
                    connect_timeout=min(self._config.connect_timeout_s, 5.0),
                    read_timeout=min(self._config.read_timeout_s, 10.0),
                )
            ),
        )
        try:
            probe.head_bucket(Bucket=self._bucket)
        except ClientError as exc:
            error = self._client_error("check", self._where, exc)
            if isinstance(error, ObjectNotFoundError):
                error = StorageConfigError(f"bucket {self._bucket!r} does not exist{self._at()}")
            elif not isinstance(error, StorageConfigError):
                error = StorageConfigError(str(error))
            raise error from exc
        except BotoCoreError as exc:
            raise StorageConfigError(
                f"cannot use {self._where}: {self._error('check', None, exc)}"
            ) from exc


class _BodyReader(io.RawIOBase):
    """A raw stream over a botocore `StreamingBody`; network failures become transient errors."""

    def __init__(self, body: "StreamingBody", where: str) -> None:
        super().__init__()
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except _TRANSIENT_NETWORK as exc:
            raise TransientStorageError(
                f"reading {self._where} failed mid-stream: {type(exc).__name__}"
            ) from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
