"""Turn `Settings` into the plain values and clients that lower layers take, and own the
process's `Resources` (see `autolabel.tasks.resources` for their lifecycle)."""

import atexit
import logging
import os
import socket
import threading
from contextlib import suppress

from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url

from autolabel.flows.errors import ConfigError
from autolabel.flows.settings import Settings
from autolabel.models.weight_files import WeightFile
from autolabel.storage.config import S3Config
from autolabel.storage.db.engine import make_engine, schema_status, upgrade_to_head
from autolabel.storage.objectstore import ObjectStore, open_store
from autolabel.tasks.resources import ResourceConfig, Resources, resolve_device

logger = logging.getLogger(__name__)


def s3_config(settings: Settings) -> S3Config:
    """The S3 client settings (credentials stay with boto3's chain)."""
    return settings.s3


def open_configured_store(settings: Settings, url: str | None = None) -> ObjectStore:
    """The object store at `url`, or the configured default store (created when embedded)."""
    if url is None and settings.storage.url is None:
        (settings.home / "store").mkdir(parents=True, exist_ok=True)
    return open_store(url or settings.resolved_storage_url, s3=s3_config(settings))


def database_url(settings: Settings) -> URL:
    """The database URL with the secret password (if configured apart) filled in.

    The embedded SQLite default's folder is created on first use.
    """
    if settings.database.url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    url = make_url(settings.resolved_database_url)
    if settings.database.password is not None:
        url = url.set(password=settings.database.password.get_secret_value())
    return url


def known_weight_files() -> list[tuple[str, WeightFile]]:
    """(model name, weights file) of every released model autolabel can load, of every family."""
    from autolabel.models.registry import MODEL_SPECS  # the models: only for commands that load

    specs = sorted(MODEL_SPECS.items())
    return [(name, spec.weights) for name, spec in specs if spec.weights is not None]


def inference_device(settings: Settings, override: str | None = None) -> str:
    """The device models run on: `override` (a CLI option) or the configured one, with `auto`
    resolved to `cuda` when available, else `cpu`."""
    return resolve_device(override or settings.models.device)


def resource_config(settings: Settings, *, device_limit: str | None = None) -> ResourceConfig:
    """What the process's `Resources` are built from."""
    return ResourceConfig(
        database_url=database_url(settings),
        s3=s3_config(settings),
        weights_dir=settings.resolved_weights_dir,
        runtime_cache_dir=settings.models.runtime_cache_dir,
        device=settings.models.device,
        storage_url=settings.resolved_storage_url,
        device_limit=device_limit,
        max_image_pixels=settings.images.max_pixels,
    )


def prepare_database(settings: Settings) -> str | None:
    """Make sure the schema is current, or raise `ConfigError` saying what to run.

    The embedded SQLite database is migrated automatically, and so is a configured database
    that is empty (no tables at all). A configured database with tables is never migrated here:
    another schema revision, or tables without a revision, needs `autolabel db upgrade`.

    Returns a one-line notice when a configured database was migrated, else None.
    """
    url = database_url(settings)
    if settings.database.url is None:
        upgrade_to_head(url)
        return None
    shown = url.render_as_string(hide_password=True)
    engine = make_engine(url)
    try:
        current, head = schema_status(engine)
        if current == head:
            return None
        if current is None and not inspect(engine).get_table_names():
            upgrade_to_head(engine)
            return f"database {shown} was empty: created the schema at {head}"
    finally:
        engine.dispose()
    if current is None:
        raise ConfigError(
            f"database {shown} has tables but no autolabel schema revision, expected {head}: "
            "point AUTOLABEL_DATABASE__URL at an empty or autolabel database, or run "
            "`autolabel db upgrade`"
        )
    raise ConfigError(
        f"database {shown} has schema {current}, expected {head}: run `autolabel db upgrade`"
    )


_lock = threading.Lock()
_process: Resources | None = None


def process_resources(settings: Settings, *, use_device_limit: bool = False) -> Resources:
    """This process's resources for `settings`, after checking the schema.

    One `Resources` lives per process: flow runs with the same configuration reuse it (a served
    worker keeps its loaded models); a changed configuration closes the old one first. With
    `use_device_limit` and a Prefect server (not the ephemeral API), device work is capped by
    this host's global concurrency limit (created with one slot if missing).
    """
    global _process
    if settings.prefect_api == "server" and not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("AUTOLABEL_PREFECT_API=server needs PREFECT_API_URL, which is unset")
    notice = prepare_database(settings)
    if notice is not None:
        logger.warning("%s", notice)
    limit = None
    if use_device_limit and settings.prefect_api == "server":
        limit = ensure_device_limit(settings)
    config = resource_config(settings, device_limit=limit)
    with _lock:
        if _process is None or _process.config != config:
            if _process is not None:
                _process.close()
            _process = Resources(config)
        return _process


def close_process_resources() -> None:
    """Close this process's resources (at exit, or to release the database in tests)."""
    global _process
    with _lock:
        if _process is not None:
            _process.close()
            _process = None


atexit.register(close_process_resources)


def device_limit_name(device: str) -> str:
    """Name of the global concurrency limit guarding one device of this worker host."""
    return f"autolabel-device-{socket.gethostname()}-{device.replace(':', '-')}"


def ensure_device_limit(settings: Settings) -> str:
    """Create this host's device concurrency limit (1 slot) unless an operator already set one."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = device_limit_name(inference_device(settings))
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another flow on this host created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
    return name
