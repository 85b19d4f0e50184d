"""S3Config: validation, a description on every field, the botocore configuration built from it."""

import pytest
from pydantic import ValidationError

from autolabel.storage.config import MIB, S3Config
from autolabel.storage.s3 import botocore_config


def test_defaults_are_valid_and_frozen() -> None:
    config = S3Config()
    assert config.endpoint_url is None
    assert config.path_style is False
    with pytest.raises(ValidationError):
        config.region = "eu-west-1"  # type: ignore[misc]


def test_every_field_is_described() -> None:
    for name, field in S3Config.model_fields.items():
        assert field.description, name
        assert len(field.description) > 20, name


def test_no_credential_fields() -> None:
    names = " ".join(S3Config.model_fields).lower()
    for word in ("secret", "password", "access_key", "token"):
        assert word not in names


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="aws_secret_access_key"):
        S3Config(**{"aws_secret_access_key": "not-a-field"})


@pytest.mark.parametrize(
    ("endpoint", "match"),
    [
        ("minio:9000", "http"),
        ("ftp://minio:9000", "http"),
        ("http://admin:hunter2@minio:9000", "user info"),
        ("http://minio:9000/?token=abc", "query string"),
    ],
)
def test_endpoint_validation_never_echoes_secrets(endpoint: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        S3Config(endpoint_url=endpoint)
    assert "hunter2" not in str(info.value).replace(endpoint, "")
    messages = " ".join(str(error["msg"]) for error in info.value.errors())
    assert "hunter2" not in messages
    assert "token=abc" not in messages


def test_endpoint_is_normalised() -> None:
    assert S3Config(endpoint_url="http://minio:9000/").endpoint_url == "http://minio:9000"


def test_multipart_sizes_respect_s3_minimum() -> None:
    with pytest.raises(ValidationError, match="greater than or equal"):
        S3Config(multipart_chunk_bytes=MIB)
    S3Config(multipart_threshold_bytes=5 * MIB, multipart_chunk_bytes=5 * MIB)


def test_botocore_config_carries_the_settings() -> None:
    config = S3Config(
        region="eu-central-1",
        path_style=True,
        connect_timeout_s=2.5,
        read_timeout_s=7,
        max_attempts=4,
    )
    boto = botocore_config(config)
    assert boto.region_name == "eu-central-1"
    assert boto.connect_timeout == 2.5
    assert boto.read_timeout == 7
    assert boto.retries == {"mode": "adaptive", "max_attempts": 4}
    assert boto.s3 == {"addressing_style": "path"}
    assert botocore_config(S3Config()).s3 == {"addressing_style": "auto"}
