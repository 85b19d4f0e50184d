"""S3Store against a real S3 HTTP endpoint (the moto server started by tests/conftest.py)."""

import io
import logging
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from autolabel.storage.config import MIB, S3Config
from autolabel.storage.errors import (
    ObjectNotFoundError,
    StorageConfigError,
    StorageError,
    TransientStorageError,
    UnsafeKeyError,
)
from autolabel.storage.objectstore import ObjectStore, open_store
from autolabel.storage.s3 import S3Store
from autolabel.storage.tar_stream import iter_tar
from tests.conftest import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"  # noqa: S105 - fake key for moto


@pytest.fixture
def config(s3_env: str) -> S3Config:
    return S3Config(endpoint_url=s3_env, region="us-east-1", path_style=True, max_attempts=2)


@pytest.fixture
def store(s3_bucket: str, config: S3Config) -> S3Store:
    return S3Store(s3_bucket, "data", config=config)


def _raw_client(endpoint: str) -> "S3Client":
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def test_roundtrip(store: S3Store, s3_bucket: str, s3_env: str) -> None:
    assert isinstance(store, ObjectStore)
    assert store.url == f"s3://{s3_bucket}/data"
    store.check()
    info = store.put("a/b.jpg", b"jpeg bytes", content_type="image/jpeg")
    assert (info.key, info.size) == ("a/b.jpg", 10)
    assert store.get("a/b.jpg") == b"jpeg bytes"
    assert store.head("a/b.jpg") == info
    assert store.exists("a/b.jpg")
    raw = _raw_client(s3_env).head_object(Bucket=s3_bucket, Key="data/a/b.jpg")
    assert raw["ContentType"] == "image/jpeg"
    assert raw["ETag"].strip('"') == info.etag
    with store.open("a/b.jpg") as stream:
        assert stream.read(4) == b"jpeg"
        assert stream.read() == b" bytes"
    store.delete("a/b.jpg")
    assert not store.exists("a/b.jpg")
    store.delete("a/b.jpg")


def test_open_store_with_config(s3_bucket: str, config: S3Config) -> None:
    store = open_store(f"s3://{s3_bucket}/root/", s3=config)
    store.put("k.txt", b"1")
    assert [i.key for i in store.list()] == ["k.txt"]
    assert store.url == f"s3://{s3_bucket}/root"


def test_missing_key(store: S3Store) -> None:
    for call in (store.get, store.head, store.open):
        with pytest.raises(ObjectNotFoundError, match=r"a/missing\.jpg"):
            call("a/missing.jpg")
    assert not store.exists("a/missing.jpg")


def test_unsafe_keys_rejected_before_any_request(store: S3Store) -> None:
    for key in ("../escape", "/abs", "a//b", "a\\b"):
        with pytest.raises(UnsafeKeyError):
            store.put(key, b"x")


def test_missing_bucket_is_a_config_error(config: S3Config) -> None:
    store = S3Store("no-such-bucket-autolabel", config=config)
    with pytest.raises(StorageConfigError, match="'no-such-bucket-autolabel' does not exist"):
        store.check()
    with pytest.raises(StorageConfigError, match="does not exist"):
        store.get("a.jpg")
    with pytest.raises(StorageConfigError, match="does not exist"):
        list(store.list())
    with pytest.raises(StorageConfigError, match="does not exist"):
        store.put("a.jpg", b"x")


def test_unreachable_endpoint(s3_env: str) -> None:  # s3_env: dummy credentials
    config = S3Config(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region="us-east-1",
        max_attempts=1,
        connect_timeout_s=1,
        read_timeout_s=1,
    )
    store = S3Store("some-bucket", config=config)
    with pytest.raises(TransientStorageError, match="after retries"):
        store.get("a.jpg")
    with pytest.raises(StorageConfigError, match="cannot use s3://some-bucket"):
        store.check()
    patient = S3Store(
        "some-bucket", config=S3Config(endpoint_url=config.endpoint_url, region="us-east-1")
    )
    start = time.monotonic()
    with pytest.raises(StorageConfigError):
        patient.check()  # default 10 adaptive attempts, but check() gives up quickly
    assert time.monotonic() - start < 20


def _put_many(s3_env: str, bucket: str, keys: list[str]) -> None:
    client = _raw_client(s3_env)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


def test_listing_paginates_streams_and_filters(store: S3Store, s3_bucket: str, s3_env: str) -> None:
    keys = [f"data/img/{i:05d}.{'JPG' if i % 3 == 0 else 'png'}" for i in range(1100)]
    keys += ["data/other/a.jpg", "data/img/sub/b.jpg", "outside/c.jpg", "datadog.jpg"]
    keys += ["data/img/", "data/other/"]  # zero-byte folder markers, as consoles create
    _put_many(s3_env, s3_bucket, keys)
    requests: list[str] = []
    store._client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kwargs: requests.append("list")
    )
    listing = store.list("img/")
    first = next(listing)
    assert first.key == "img/00000.JPG"
    assert len(requests) == 1  # the first key arrives after one page, not the whole listing
    rest = list(listing)
    assert len(requests) == 2
    assert len(rest) + 1 == 1101
    everything = [info.key for info in store.list()]
    assert len(everything) == 1102
    assert everything == sorted(everything)
    assert "c.jpg" not in " ".join(everything)
    jpgs = {info.key for info in store.list(suffixes=[".jpg"])}
    assert len(jpgs) == 367 + 2
    assert {info.key for info in store.list(pattern="**/b.jpg")} == {"img/sub/b.jpg"}
    assert {info.key for info in store.list(pattern="*/a.jpg")} == {"other/a.jpg"}
    requests.clear()
    assert [info.key for info in store.list(pattern="other/*")] == ["other/a.jpg"]
    assert len(requests) == 1  # the glob's literal prefix narrowed the listing
    assert list(store.list("img/", pattern="other/*")) == []


def test_put_file_multipart(tmp_path: Path, s3_bucket: str, s3_env: str) -> None:
    config = S3Config(
        endpoint_url=s3_env,
        region="us-east-1",
        path_style=True,
        multipart_threshold_bytes=5 * MIB,
        multipart_chunk_bytes=5 * MIB,
        max_concurrency=3,
    )
    store = S3Store(s3_bucket, "weights", config=config)
    payload = os.urandom(11 * MIB + 123)
    source = tmp_path / "model.pt"
    source.write_bytes(payload)
    info = store.put_file("sam/model.pt", source)
    assert info.size == len(payload)
    assert info.etag.endswith("-3")  # S3's multipart ETag: md5-of-md5s dash part count
    assert store.get("sam/model.pt") == payload
    small = tmp_path / "small.json"
    small.write_bytes(b"{}")
    assert "-" not in store.put_file("small.json", small).etag
    with pytest.raises(StorageError, match="is not a file"):
        store.put_file("x", tmp_path / "missing.bin")


def test_tar_shard_streams_from_s3(store: S3Store) -> None:
    out = io.BytesIO()
    members = [(f"sa_{i}.jpg", os.urandom(3000)) for i in range(4)]
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    store.put("shards/sa_000000.tar", out.getvalue())
    with store.open("shards/sa_000000.tar") as stream:
        assert list(iter_tar(stream)) == members


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch, s3_env: str) -> str:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return s3_env


def test_secret_never_in_errors_or_logs(
    secret_env: str, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = S3Config(endpoint_url=secret_env, region="us-east-1", path_style=True, max_attempts=1)
    store = S3Store(s3_bucket, config=config)
    errors: list[BaseException] = []
    store.put("ok.txt", b"fine")
    store.get("ok.txt")
    for action in (
        lambda: store.get("missing.txt"),
        lambda: S3Store("absent-bucket-xyz", config=config).get("k"),
        lambda: S3Store("absent-bucket-xyz", config=config).check(),
        lambda: list(S3Store("absent-bucket-xyz", config=config).list()),
    ):
        with pytest.raises(StorageError) as info:
            action()
        errors.append(info.value)
    assert caplog.records  # botocore did log at DEBUG: the check below is not vacuous
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    for error in errors:
        chain: BaseException | None = error
        while chain is not None:
            assert SECRET not in str(chain)
            assert SECRET not in repr(chain)
            chain = chain.__cause__ or chain.__context__
