"""Turn `Settings` into the plain values and clients that lower layers take, and own the
process's `Resources` (see `autolabel.tasks.resources` for their lifecycle)."""

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url

from autolabel.flows.errors import ConfigError
from autolabel.flows.settings import Settings
from autolabel.models.weight_files import WeightFile
from autolabel.storage.config import S3Config
from autolabel.storage.db.engine import make_engine, schema_status, upgrade_to_head
from autolabel.storage.objectstore import ObjectStore, open_store
from autolabel.tasks.resources import (
    DEVICE_LEASE_SECONDS,
    ResourceConfig,
    Resources,
    host_devices,
    resolve_device,
)

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


def resource_config(
    settings: Settings, *, device_limit: str | None = None, device: str | None = None
) -> ResourceConfig:
    """What the process's `Resources` are built from (on `device`, else the configured one)."""
    return ResourceConfig(
        database_url=database_url(settings),
        s3=s3_config(settings),
        weights_dir=settings.resolved_weights_dir,
        runtime_cache_dir=settings.models.runtime_cache_dir,
        device=device or settings.models.device,
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


def process_resources(
    settings: Settings, *, use_device_limit: bool = False, device: str | None = None
) -> Resources:
    """This process's resources for `settings` (on `device`, else the configured device), after
    checking the schema.

    One `Resources` lives per process: flow runs with the same configuration reuse it (a served
    worker keeps its loaded models); a changed configuration closes the old one first. With
    `use_device_limit` and a Prefect server (not the ephemeral API), device work is capped by
    the global concurrency limit of this host's (first) device, created with one slot if missing.
    """
    global _process
    if settings.prefect_api == "server" and not os.environ.get("PREFECT_API_URL"):
        raise ConfigError("AUTOLABEL_PREFECT_API=server needs PREFECT_API_URL, which is unset")
    notice = prepare_database(settings)
    if notice is not None:
        logger.warning("%s", notice)
    limit = None
    if use_device_limit and settings.prefect_api == "server":
        limit = ensure_device_limit(host_devices(device or settings.models.device)[0])
    config = resource_config(settings, device_limit=limit, device=device)
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


def ensure_device_limit(device: str) -> str:
    """Create the concurrency limit (1 slot) of `device` on this host unless an operator already
    set one; returns its name."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = device_limit_name(device)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another flow on this host created it first
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
    return name


@contextmanager
def device_slot(
    devices: list[str], *, try_seconds: float = 2.0, pause_seconds: float = 5.0
) -> Iterator[str]:
    """Hold a free device of `devices` (this host's, see `host_devices`) for the block; yields
    it (`cuda:1`...).

    Each GPU has its own limit of one slot (`ensure_device_limit`), so a host with N GPUs runs N
    shard runs at once, one per GPU: its worker takes `--limit N`. With several devices each is
    tried in turn for `try_seconds`, then again after `pause_seconds`; with one, this waits for
    it. The slot is leased and renewed: a killed holder's slot is revoked by the Prefect server
    within `DEVICE_LEASE_SECONDS` (plus its sweep) instead of blocking the device forever. The
    CPU takes no slot: CPU workers are bounded by their worker's `--limit` alone.
    """
    from prefect.concurrency.sync import concurrency

    if devices == ["cpu"]:
        yield "cpu"
        return
    names = {device: ensure_device_limit(device) for device in devices}
    wait = None if len(devices) == 1 else try_seconds
    while True:
        for device in devices:
            slot = ExitStack()
            try:
                slot.enter_context(
                    concurrency(
                        names[device],
                        occupy=1,
                        timeout_seconds=wait,
                        strict=True,
                        lease_duration=DEVICE_LEASE_SECONDS,
                        raise_on_lease_renewal_failure=False,
                    )
                )
            except TimeoutError:
                continue
            with slot:
                yield device
            return
        logger.info("all %d devices of this host are busy: waiting for one", len(devices))
        time.sleep(pause_seconds)
