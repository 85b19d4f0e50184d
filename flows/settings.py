"""Service configuration: one `Settings` read from `AUTOLABEL_*` environment variables and `.env`.

Settings are nested: each layer's options form one sub-model, and a leaf is the variable
`AUTOLABEL_<SECTION>__<FIELD>` (two underscores), e.g. `AUTOLABEL_S3__MAX_ATTEMPTS` or
`AUTOLABEL_DATABASE__URL`. `AUTOLABEL_HOME` and `AUTOLABEL_PREFECT_API` are top-level.
An `AUTOLABEL_*` variable that is not a setting (a typo, or a flat name from before the nesting
such as `AUTOLABEL_DATABASE_URL`) is an error, never silently ignored.

Only flows and entry points call `get_settings()`; lower layers receive plain values. Credentials
for S3 come from boto3's normal chain (`AWS_*` variables, profiles, instance roles) and are never
fields here; a database password may be given apart from the URL as a secret.
"""

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from autolabel.flows.errors import ConfigError
from autolabel.models.runtime.choice import Backend, Precision
from autolabel.storage.config import S3Config
from autolabel.storage.images import DEFAULT_MAX_PIXELS
from autolabel.storage.urls import STORE_SCHEMES, is_url, parse_store_root

PREFIX = "AUTOLABEL_"
DELIMITER = "__"
ENV_FILE = ".env"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DATABASE_SCHEMES = ("sqlite", "postgresql")

#: `AUTOLABEL_*` variables read by tools other than `Settings` (never refused as unknown).
OTHER_VARIABLES = frozenset(
    {
        "AUTOLABEL_CODE_DIR",  # deploy/prefect.yaml: where the worker image keeps the code
        "AUTOLABEL_TEST_PG_ADMIN_URL",  # tests/conftest.py: PostgreSQL server of the tests
        "AUTOLABEL_SHARED_DIR",  # tests: shared fixture folder
        "AUTOLABEL_OFFICIAL_EFFICIENTVIT",  # bench: official reference checkout
        "AUTOLABEL_OFFICIAL_PYTHON",  # bench: interpreter of the official reference
        "AUTOLABEL_REQUIRE_REVIEW_TOOLS",  # .ci/run: tests fail, not skip, without a review tool
    }
)

#: Flat names from before the nesting whose new name is not just `_` -> `__`.
_MOVED = {
    "AUTOLABEL_WEIGHTS_DIR": "AUTOLABEL_MODELS__WEIGHTS_DIR",
    "AUTOLABEL_DEVICE": "AUTOLABEL_MODELS__DEVICE",
    "AUTOLABEL_SEGMENTER": "AUTOLABEL_MODELS__SEGMENTER",
    "AUTOLABEL_DETECTOR": "AUTOLABEL_MODELS__DETECTOR",
    "AUTOLABEL_MAX_IMAGE_PIXELS": "AUTOLABEL_IMAGES__MAX_PIXELS",
}


def _default_home() -> Path:
    return Path.home() / ".autolabel"


class StorageConfig(BaseModel):
    """Where images and exports live (the S3 client options are in `S3Config`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None,
        description="Where images and exports live: `file:///abs/folder` or `s3://bucket/prefix`. "
        "Default: `file://<home>/store`.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if is_url(value) else ""
        if scheme not in STORE_SCHEMES:
            raise ValueError(
                f"expected a URL with scheme {' or '.join(STORE_SCHEMES)}, got scheme "
                f"{scheme or '(none)'!r}"
            )
        parse_store_root(value)  # StorageConfigError (a ValueError) names what is wrong
        return value


class DatabaseConfig(BaseModel):
    """The annotation database."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the annotation database, e.g. "
        "`postgresql+psycopg://user@host:5432/autolabel`. "
        "Default: SQLite file `<home>/autolabel.db`.",
    )
    password: SecretStr | None = Field(
        default=None,
        description="Database password, kept out of the URL, logs and flow parameters.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme.split("+", 1)[0]
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                "expected a sqlite:/// or postgresql+psycopg:// URL, "
                f"got scheme {scheme or '(none)'!r}"
            )
        return value


class ModelsConfig(BaseModel):
    """Model weights, the inference device and the default models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights_dir: Path | None = Field(
        default=None,
        description="Folder of checkpoint files (checked by sha256). Default: `<home>/weights`.",
    )
    device: str = Field(
        default="auto", description="Inference device: `auto`, `cpu`, `cuda` or `cuda:N`."
    )
    runtime_cache_dir: Path | None = Field(
        default=None,
        description="Folder of exported graphs, engines and runtime choices (rebuilt when "
        "missing or corrupt). Default: `<weights_dir>/runtime-cache`.",
    )
    segmenter: str = Field(
        default="efficientvit-sam-l0", description="Default EfficientViT-SAM model name."
    )
    detector: str = Field(
        default="grounding-dino-swint-ogc", description="Default GroundingDINO model name."
    )
    segmenter_backend: Backend = Field(
        default="auto",
        description="Segmenter runtime: `auto` (the fastest installed one that passes its parity "
        "gate), `torch`, `onnxruntime`, `openvino` or `tensorrt`.",
    )
    segmenter_precision: Precision = Field(
        default="auto", description="Segmenter precision: `auto`, `fp32`, `bf16` or `fp16`."
    )
    detector_backend: Backend = Field(
        default="auto",
        description="Detector runtime: `auto`, `torch`, `onnxruntime` or `openvino`.",
    )
    detector_precision: Precision = Field(
        default="auto", description="Detector precision: `auto`, `fp32`, `bf16` or `fp16`."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE_RE.match(value):
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
        return value


class ImagesConfig(BaseModel):
    """Decoding of untrusted images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        le=DEFAULT_MAX_PIXELS,
        description="Largest width * height decoded, by labeling and export overlays alike; "
        "larger images fail as `too_many_pixels`. At most PIL's bomb limit.",
    )


class LabelingConfig(BaseModel):
    """How one job's shards spread over the workers of a work pool (Prefect server only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shard_deployment: str | None = Field(
        default="autolabel-shard/label-shard",
        description="Deployment (`flow/name`) that runs a job's shards as flow runs on a work "
        "pool when AUTOLABEL_PREFECT_API=server; if the server has none of that name, or this "
        "is empty, shards run in the job's own process.",
    )
    shard_runs_in_flight: int = Field(
        default=8,
        ge=1,
        le=4096,
        description="Most shard runs of one job submitted at once (a job's `max_gpus` lowers "
        "it); more than the pool's GPUs keeps the next run queued for each free worker.",
    )
    images_per_shard_run: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Images per shard run on a work pool until start-up has been measured "
        "(fewer when a small job would otherwise leave workers idle): each run pays one process "
        "start and model load.",
    )
    max_startup_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=0.5,
        description="Once shard runs have completed, later ones are sized so that their measured "
        "start-up is at most this fraction of a run (up to 16x `images_per_shard_run`); 0 keeps "
        "`images_per_shard_run`.",
    )
    shard_retry_delays_s: tuple[float, ...] = Field(
        default=(5.0, 30.0),
        max_length=10,
        description="Seconds to wait before each retry of a shard that failed on a transient "
        "error (throttling, a dropped connection, a database restart) in the job's process, one "
        "retry per entry, as a JSON list; `[]` fails such a shard at once.",
    )
    shard_run_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Attempts per shard run: a run that fails or whose worker dies is rerun "
        "for its images not yet stored, until this many attempts.",
    )

    @field_validator("shard_retry_delays_s")
    @classmethod
    def _check_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= delay <= 3600 for delay in value):
            raise ValueError(f"expected delays between 0 and 3600 seconds, got {list(value)}")
        return value

    @field_validator("shard_deployment")
    @classmethod
    def _check_deployment(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.count("/") != 1 or not all(value.split("/")):
            raise ValueError(f"expected <flow name>/<deployment name>, got {value!r}")
        return value


class Settings(BaseSettings):
    """Everything an operator configures; see the module docstring for the variable names."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter=DELIMITER,
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Folder for the embedded defaults: local image store, SQLite file, weights.",
    )
    prefect_api: Literal["ephemeral", "server"] = Field(
        default="ephemeral",
        description="`ephemeral` runs flows against a throwaway local Prefect API; `server` uses "
        "PREFECT_API_URL (a Prefect server or Prefect Cloud).",
    )
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object store.")
    s3: S3Config = Field(default_factory=S3Config, description="S3 client options.")
    database: DatabaseConfig = Field(
        default_factory=DatabaseConfig, description="Annotation database."
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Models and device.")
    images: ImagesConfig = Field(default_factory=ImagesConfig, description="Image decoding.")
    labeling: LabelingConfig = Field(
        default_factory=LabelingConfig, description="Shards of a job on a work pool."
    )

    @property
    def resolved_storage_url(self) -> str:
        """The storage URL, with the embedded default filled in."""
        return self.storage.url or (self.home / "store").resolve().as_uri()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, with the embedded default filled in (password not included)."""
        return self.database.url or f"sqlite:///{(self.home / 'autolabel.db').resolve()}"

    @property
    def resolved_weights_dir(self) -> Path:
        return self.models.weights_dir or self.home / "weights"


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _leaves(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    """(variable name, field) of every leaf setting below `model`."""
    for name, field in model.model_fields.items():
        sub = _sub_model(field.annotation)
        if sub is None:
            yield f"{prefix}{name.upper()}", field
        else:
            yield from _leaves(sub, f"{prefix}{name.upper()}{DELIMITER}")


def variable_fields() -> list[tuple[str, Any]]:
    """Every setting's environment variable and its field, in declaration order."""
    return list(_leaves(Settings, PREFIX))


def variable_names() -> list[str]:
    """Every leaf variable `Settings` reads, in table order."""
    return [name for name, _ in variable_fields()]


def _accepted_names() -> frozenset[str]:
    sections = {
        f"{PREFIX}{name.upper()}"  # a whole section as JSON, e.g. AUTOLABEL_S3='{"region": ...}'
        for name, field in Settings.model_fields.items()
        if _sub_model(field.annotation) is not None
    }
    return frozenset(variable_names()) | sections | OTHER_VARIABLES


def _suggestion(name: str) -> str | None:
    leaves = variable_names()
    if name in _MOVED:
        return _MOVED[name]
    flat = {leaf.replace(DELIMITER, "_"): leaf for leaf in leaves}
    if name in flat:
        return flat[name]
    tails = {leaf.removeprefix(PREFIX): leaf for leaf in leaves}
    close = difflib.get_close_matches(name.removeprefix(PREFIX), tails, n=1, cutoff=0.8)
    return tails[close[0]] if close else None


def _configured_names(environ: Mapping[str, str]) -> Iterator[str]:
    """`AUTOLABEL_*` names set in the environment and in `.env` (upper-cased, as matched)."""
    yield from (k.upper() for k in environ if k.upper().startswith(PREFIX))
    env_file = Path(ENV_FILE)
    if env_file.is_file():
        from dotenv import dotenv_values

        yield from (k.upper() for k in dotenv_values(env_file) if k.upper().startswith(PREFIX))


def check_variable_names(environ: Mapping[str, str] | None = None) -> None:
    """Refuse an `AUTOLABEL_*` variable that no setting reads, with the likely intended name."""
    accepted = _accepted_names()
    for name in _configured_names(os.environ if environ is None else environ):
        if name in accepted:
            continue
        hint = _suggestion(name)
        raise ConfigError(
            f"unknown setting {name}"
            + (f"; did you mean {hint}?" if hint else "")
            + " (nested settings are AUTOLABEL_<SECTION>__<FIELD>; see the README's table)"
        )


def _variable_of(loc: tuple[int | str, ...]) -> str:
    """The variable a validation error's location belongs to, e.g. AUTOLABEL_S3__MAX_ATTEMPTS."""
    parts: list[str] = []
    model: type[BaseModel] | None = Settings
    for part in loc:
        if model is None or not isinstance(part, str):
            break
        field = model.model_fields.get(part)
        parts.append(part.upper())
        model = _sub_model(field.annotation) if field is not None else None
    return PREFIX + DELIMITER.join(parts) if parts else f"{PREFIX}?"


@cache
def get_settings() -> Settings:
    """The process-wide settings; raises `ConfigError` naming the bad variable."""
    return load_settings()


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env`; every problem becomes a one-line
    `ConfigError` naming the variable as the user writes it."""
    check_variable_names()
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        value = first.get("input")
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{_variable_of(first['loc'])}={value!r}: {message}") from exc
    except SettingsError as exc:  # a section given as JSON that does not parse
        raise ConfigError(
            f"{str(exc).splitlines()[0]}: a whole section must be a JSON object; "
            "or set one field as AUTOLABEL_<SECTION>__<FIELD>"
        ) from exc
