"""S3Store's translation of botocore exceptions into storage errors (no network involved)."""

import io

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.response import StreamingBody

from autolabel.storage.config import S3Config
from autolabel.storage.errors import (
    ObjectNotFoundError,
    StorageConfigError,
    StorageError,
    TransientStorageError,
)
from autolabel.storage.s3 import S3Store, _BodyReader


@pytest.fixture(scope="module")
def store() -> S3Store:
    return S3Store("my-bucket", "data", config=S3Config(endpoint_url="http://s3.internal:9000"))


def _client_error(code: str, status: int, message: str = "msg") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ObjectNotFoundError),
        ("404", 404, ObjectNotFoundError),
        ("NoSuchBucket", 404, StorageConfigError),
        ("AccessDenied", 403, StorageConfigError),
        ("InvalidAccessKeyId", 403, StorageConfigError),
        ("SlowDown", 503, TransientStorageError),
        ("Throttling", 400, TransientStorageError),
        ("RequestTimeout", 400, TransientStorageError),
        ("InternalError", 500, TransientStorageError),
        ("TooManyRequests", 429, TransientStorageError),
        ("InvalidRange", 416, StorageError),
    ],
)
def test_client_errors(store: S3Store, code: str, status: int, expected: type) -> None:
    error = store._error("get", "a.jpg", _client_error(code, status, "Signature=SECRETSIG"))
    assert type(error) is expected
    assert code in str(error) or expected is StorageConfigError
    assert "SECRETSIG" not in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://s3.internal:9000/x"),
        ConnectTimeoutError(endpoint_url="http://s3.internal:9000/x"),
        ReadTimeoutError(endpoint_url="http://s3.internal:9000/x"),
    ],
)
def test_network_errors_are_transient(store: S3Store, exc: Exception) -> None:
    error = store._error("get", "a.jpg", exc)
    assert isinstance(error, TransientStorageError)
    assert "s3://my-bucket/data/a.jpg" in str(error)


def test_missing_credentials_are_a_config_error(store: S3Store) -> None:
    assert isinstance(store._error("list", None, NoCredentialsError()), StorageConfigError)


def test_upload_failures_use_the_underlying_client_error(store: S3Store) -> None:
    try:
        try:
            raise _client_error("SlowDown", 503)
        except ClientError as inner:
            raise S3UploadFailedError("Failed to upload /tmp/x to my-bucket/data/x") from inner
    except S3UploadFailedError as outer:
        error = store._error("put_file", "x", outer)
    assert isinstance(error, TransientStorageError)


def test_url_and_repr_hold_no_endpoint_secrets(store: S3Store) -> None:
    assert store.url == "s3://my-bucket/data"
    assert repr(store) == "S3Store('s3://my-bucket/data at http://s3.internal:9000')"


class _FlakyRaw(io.RawIOBase):
    """A socket-like stream that delivers `good` bytes, then times out."""

    def __init__(self, good: bytes) -> None:
        self._good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._good.read(size)
        if not chunk:
            raise ReadTimeoutError(endpoint_url="http://s3.internal:9000/x")
        return chunk


def test_stream_failures_mid_body_are_transient() -> None:
    body = StreamingBody(_FlakyRaw(b"abcdef"), 100)
    with (
        io.BufferedReader(_BodyReader(body, "s3://my-bucket/data/a.tar"), 4) as stream,
        pytest.raises(TransientStorageError, match=r"a\.tar failed mid-stream"),
    ):
        stream.read()


def test_short_body_is_transient() -> None:
    body = StreamingBody(io.BytesIO(b"abc"), 10)
    with (
        io.BufferedReader(_BodyReader(body, "s3://my-bucket/data/a.tar")) as stream,
        pytest.raises(TransientStorageError, match="IncompleteReadError"),
    ):
        stream.read()
