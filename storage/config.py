"""Storage settings owned by the storage layer (nested into the root `Settings` by `flows/`).

Credentials are deliberately absent: S3 credentials come from the normal boto3 chain
(environment, shared config/credentials files, container or instance roles), so they never
travel as settings values, flow parameters or log lines.
"""

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

MIB = 1024 * 1024
#: S3's smallest allowed multipart part (except the last one).
MIN_MULTIPART_CHUNK_BYTES = 5 * MIB


class S3Config(BaseModel):
    """How to reach an S3-compatible object store (AWS S3, MinIO, Ceph RGW, moto)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = Field(
        default=None,
        description=(
            "Endpoint of an S3-compatible service, e.g. `http://minio:9000`; unset for AWS S3. "
            "Must not contain credentials, a query string or a fragment."
        ),
    )
    region: str | None = Field(
        default=None,
        description="Region name, e.g. `us-east-1`; unset to use the boto3 default chain.",
    )
    path_style: bool = Field(
        default=False,
        description=(
            "Use path-style bucket addressing (`endpoint/bucket/key`), usual for MinIO and Ceph; "
            "false lets botocore choose (virtual-hosted style on AWS)."
        ),
    )
    connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a TCP connection to the endpoint."
    )
    read_timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds to wait for data on an open connection."
    )
    max_attempts: int = Field(
        default=10,
        ge=1,
        le=50,
        description=(
            "Total attempts per request (first try included) under botocore's `adaptive` retry "
            "mode, which also rate-limits the client after throttling responses."
        ),
    )
    multipart_threshold_bytes: int = Field(
        default=64 * MIB,
        ge=MIN_MULTIPART_CHUNK_BYTES,
        description="`put_file` uploads objects at least this large in multiple parts.",
    )
    multipart_chunk_bytes: int = Field(
        default=16 * MIB,
        ge=MIN_MULTIPART_CHUNK_BYTES,
        description="Part size of multipart uploads (S3 requires at least 5 MiB).",
    )
    max_concurrency: int = Field(
        default=8, ge=1, le=64, description="Parallel part uploads per `put_file` call."
    )

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_plain_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected an http(s)://host[:port] endpoint URL, got scheme {parts.scheme!r}"
            )
        if parts.username is not None or parts.password is not None:
            # Do not echo the value: it holds a credential.
            raise ValueError(
                "endpoint URL must not contain user info; credentials come from the boto3 chain"
            )
        if parts.query or parts.fragment:
            raise ValueError("endpoint URL must not contain a query string or fragment")
        return value.rstrip("/")
