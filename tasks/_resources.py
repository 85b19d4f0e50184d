"""Per-process resources: database engine, object stores and models, created once and reused.

A flow calls `configure(Runtime(...))` when it starts in a process; every task running in that
process then reaches the same engine, stores and models. Models are loaded at most once per
process (guarded by a lock), never per task call; secrets (the database password) live only here,
never in Prefect parameters.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.storage.config import S3Config
from autolabel.storage.objectstore import ObjectStore, open_store

if TYPE_CHECKING:
    from autolabel.models.detection import DetectionConfig, Detector

T = TypeVar("T")


class NotConfiguredError(RuntimeError):
    """A task ran in a process whose flow did not call `configure` first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Where this process finds its services and weights.

    Attributes:
        database_url: SQLAlchemy URL, password included (never logged).
        s3: S3 client settings (credentials come from boto3's chain).
        weights_dir: Folder of checkpoint files.
        device: "cpu", "cuda" or "cuda:N" ("auto" is resolved by `resolve_device`).
        download_weights: Fetch missing official weights (checksum-verified) when online.
        storage_url: The default object store (trained weights go below it, in `models/`).
        device_limit: Prefect global concurrency limit that device work holds a slot of, or None
            (an ephemeral API has one process only, and no expiry of a killed holder's lease).
    """

    database_url: URL
    s3: S3Config
    weights_dir: Path
    device: str = "cpu"
    download_weights: bool = True
    storage_url: str = ""
    device_limit: str | None = None


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when available, else `cpu`; other values pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


_lock = threading.RLock()
_runtime: Runtime | None = None
_cache: dict[tuple[str, ...], object] = {}


def configure(runtime: Runtime) -> None:
    """Set this process's runtime; a changed runtime drops cached engines, stores and models."""
    global _runtime
    with _lock:
        if runtime != _runtime:
            _dispose_all()
            _runtime = runtime


def runtime() -> Runtime:
    """This process's runtime; `NotConfiguredError` before `configure`."""
    if _runtime is None:
        raise NotConfiguredError(
            "expected the flow to call autolabel.tasks._resources.configure() before tasks run"
        )
    return _runtime


def cached(key: tuple[str, ...], factory: Callable[[], T]) -> T:
    """The object cached under `key`, created by `factory` once per process."""
    with _lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]  # type: ignore[return-value]


def _dispose_all() -> None:
    for value in _cache.values():
        if isinstance(value, Engine):
            value.dispose()
    _cache.clear()


def engine() -> Engine:
    """The process's database engine."""
    from autolabel.storage.db.engine import make_engine

    url = runtime().database_url
    return cached(("engine", url.render_as_string(hide_password=False)), lambda: make_engine(url))


def store(url: str) -> ObjectStore:
    """The object store rooted at `url` (one client per root and process)."""
    settings = runtime().s3
    return cached(("store", url), lambda: open_store(url, s3=settings))


def segmenter(name: str, *, random_weights: bool) -> EfficientViTSam:
    """EfficientViT-SAM `name`, loaded once per process and prepared for inference."""
    from autolabel.tasks.weights import load_segmenter

    rt = runtime()
    device = resolve_device(rt.device)
    return cached(
        ("segmenter", name, device, str(random_weights)),
        lambda: load_segmenter(name, rt, device=device, random_weights=random_weights),
    )


def detector(name: str, *, config: "DetectionConfig", random_weights: bool) -> "Detector":
    """The detector `name` with post-processing `config`; its network is loaded once per process."""
    from autolabel.tasks.weights import load_detector_parts

    rt = runtime()
    device = resolve_device(rt.device)
    parts = cached(
        ("detector-network", name, device, str(random_weights)),
        lambda: load_detector_parts(name, rt, device=device, random_weights=random_weights),
    )
    return cached(
        ("detector", name, device, str(random_weights), repr(config)),
        lambda: parts.with_config(config),
    )
