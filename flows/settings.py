"""Service configuration: one `Settings` read from `AUTOLABEL_*` environment variables and `.env`.

Only flows and entry points call `get_settings()`; lower layers receive plain values. Credentials
for S3 come from boto3's normal chain (`AWS_*` variables, profiles, instance roles) and are never
fields here; a database password may be given apart from the URL as a secret.
"""

import re
from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from autolabel.flows.errors import ConfigError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
STORAGE_SCHEMES = ("file", "s3")
DATABASE_SCHEMES = ("sqlite", "postgresql")


def _default_home() -> Path:
    return Path.home() / ".autolabel"


class Settings(BaseSettings):
    """Everything an operator configures. Each field is the variable `AUTOLABEL_<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOLABEL_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Folder for the embedded defaults: local image store, SQLite file, weights.",
    )
    storage_url: str | None = Field(
        default=None,
        description="Where images and exports live: `file:///abs/folder` or `s3://bucket/prefix`. "
        "Default: `file://<home>/store`.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, Ceph, moto); unset means AWS.",
    )
    s3_region: str | None = Field(
        default=None, description="S3 region; unset means boto3's default chain."
    )
    s3_path_style: bool = Field(
        default=False, description="Use path-style addressing (needed by most MinIO/Ceph setups)."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the annotation database, e.g. "
        "`postgresql+psycopg://user@host:5432/autolabel`. "
        "Default: SQLite file `<home>/autolabel.db`.",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="Database password, kept out of the URL, logs and flow parameters.",
    )
    weights_dir: Path | None = Field(
        default=None,
        description="Folder of checkpoint files (checked by sha256). Default: `<home>/weights`.",
    )
    device: str = Field(
        default="auto", description="Inference device: `auto`, `cpu`, `cuda` or `cuda:N`."
    )
    prefect_api: Literal["ephemeral", "server"] = Field(
        default="ephemeral",
        description="`ephemeral` runs flows against a throwaway local Prefect API; `server` uses "
        "PREFECT_API_URL (a Prefect server or Prefect Cloud).",
    )
    segmenter: str = Field(
        default="efficientvit-sam-l0", description="Default EfficientViT-SAM model name."
    )
    detector: str = Field(
        default="grounding-dino-swint-ogc", description="Default GroundingDINO model name."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE_RE.match(value):
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in STORAGE_SCHEMES:
            raise ValueError(
                f"expected a URL with scheme {' or '.join(STORAGE_SCHEMES)}, got scheme "
                f"{scheme or '(none)'!r}"
            )
        if scheme == "s3" and not urlsplit(value).netloc:
            raise ValueError("expected s3://bucket[/prefix], got no bucket name")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme.split("+", 1)[0]
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                "expected a sqlite:/// or postgresql+psycopg:// URL, "
                f"got scheme {scheme or '(none)'!r}"
            )
        return value

    @property
    def resolved_storage_url(self) -> str:
        """The storage URL, with the embedded default filled in."""
        return self.storage_url or (self.home / "store").resolve().as_uri()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, with the embedded default filled in (password not included)."""
        return self.database_url or f"sqlite:///{(self.home / 'autolabel.db').resolve()}"

    @property
    def resolved_weights_dir(self) -> Path:
        return self.weights_dir or self.home / "weights"


@cache
def get_settings() -> Settings:
    """The process-wide settings; raises `ConfigError` naming the bad variable."""
    return load_settings()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`; validation errors become `ConfigError`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        value = first.get("input")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"AUTOLABEL_{field.upper()}={value!r}: {message}") from exc


def settings_table_markdown() -> str:
    """The README's configuration table, generated from the fields of `Settings`."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "`~/.autolabel`" if name == "home" else "(computed)"
        elif field.default is None:
            default = "(unset)"
        else:
            default = f"`{field.default}`"
        lines.append(f"| `AUTOLABEL_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(lines)
