"""Per-process resources: the database engine, object stores and loaded models, in one object.

Lifecycle:
1. A flow entrypoint (or the CLI) builds a `ResourceConfig` from the settings and gets the
   process's `Resources` for it (`autolabel.flows.resources.process_resources`): one per worker
   process, reused by later flow runs with the same configuration, so a served worker loads each
   model once.
2. The flow binds it for the duration of the run with `bound(resources)`; task bodies reach it
   with `current()` (a context variable: tasks on Prefect's thread pool see the flow's binding).
3. `close()` disposes of the engine and drops the models; it runs when the configuration changes
   and at process exit.

Models are built at most once per `Resources` (guarded by a lock), never per task call. Secrets
(the database password) live only in `ResourceConfig.database_url`, never in Prefect parameters.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from autolabel.storage.config import S3Config
from autolabel.storage.db.coco_export import unwritable
from autolabel.storage.db.engine import make_engine
from autolabel.storage.images import DEFAULT_MAX_PIXELS
from autolabel.storage.local import atomic_write
from autolabel.storage.objectstore import ObjectStore, open_store
from autolabel.storage.urls import is_url, split_object_url

if TYPE_CHECKING:
    from autolabel.models.detection import DetectionConfig, Detector
    from autolabel.models.efficientvit_sam.sam import EfficientViTSam
    from autolabel.models.runtime.backends import SegmenterBackend
    from autolabel.models.runtime.choice import RuntimeRequest
    from autolabel.tasks.model_loading import DetectorParts
    from autolabel.tasks.runtimes import RuntimeChoice

T = TypeVar("T")


class NotBoundError(RuntimeError):
    """A task ran outside a flow that bound its resources (`bound`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceConfig:
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
        max_image_pixels: Largest width * height decoded, for labeling and overlays alike.
        runtime_cache_dir: Exported graphs, engines and runtime choices (default:
            `<weights_dir>/runtime-cache`).
    """

    database_url: URL
    s3: S3Config
    weights_dir: Path
    device: str = "cpu"
    download_weights: bool = True
    storage_url: str = ""
    device_limit: str | None = None
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    runtime_cache_dir: Path | None = None


# A device slot (Prefect global concurrency limit) is leased and renewed while held: a killed
# holder's slot is revoked by the Prefect server's repossessor within this time (plus its 15 s
# sweep) instead of blocking the device forever. The smallest lease the Prefect API accepts.
DEVICE_LEASE_SECONDS = 60.0


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda` when available, else `cpu`; other values pass through."""
    if device == "auto":
        import torch  # not at import: commands that load no model start without it

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def host_devices(device: str) -> list[str]:
    """The devices of this host that `device` names: every visible GPU (`cuda:0`, `cuda:1`...)
    for `cuda` (or `auto` on a GPU host), else just that device."""
    resolved = resolve_device(device)
    if resolved != "cuda":
        return [resolved]
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda:0"]


class Resources:
    """The engine, stores and models of one process, created lazily and cached by key."""

    def __init__(self, config: ResourceConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, ...], object] = {}
        self._closed = False

    def cached(self, key: tuple[str, ...], factory: Callable[[], T]) -> T:
        """The object cached under `key`, created by `factory` on first use."""
        with self._lock:
            if self._closed:
                raise NotBoundError("expected open resources, got closed ones")
            if key not in self._cache:
                self._cache[key] = factory()
            return self._cache[key]  # type: ignore[return-value]

    @property
    def engine(self) -> Engine:
        """The database engine."""
        url = self.config.database_url
        return self.cached(("engine",), lambda: make_engine(url))

    def store(self, url: str) -> ObjectStore:
        """The object store rooted at `url` (one client per root, with or without a final `/`)."""
        return self.cached(("store", url.rstrip("/")), lambda: open_store(url, s3=self.config.s3))

    def open_object(self, url: str) -> tuple[ObjectStore, str]:
        """(store, key) of one object's full URL (`s3://bucket/key`, `file:///folder/name`)."""
        root, key = split_object_url(url)
        return self.store(root), key

    def put_output(self, output: str, data: bytes, *, content_type: str) -> str:
        """Write one output file whole to a local path (a temporary file renamed, its folder
        made) or an object URL (one put); returns where it landed.

        Raises:
            StorageConfigError: A local path that cannot be written (one line).
        """
        if is_url(output):
            store, key = self.open_object(output)
            store.put(key, data, content_type=content_type)
            return output
        path = Path(output).expanduser().resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise unwritable(path, exc) from exc
        return str(path)

    def segmenter(self, name: str, *, random_weights: bool) -> "EfficientViTSam":
        """EfficientViT-SAM `name`, loaded once and prepared for inference on `device`."""
        from autolabel.tasks.model_loading import load_segmenter

        return self.cached(
            ("segmenter", name, str(random_weights)),
            lambda: load_segmenter(name, self, random_weights=random_weights),
        )

    def segmenter_runtime(
        self, name: str, *, random_weights: bool, request: "RuntimeRequest"
    ) -> tuple["SegmenterBackend", "RuntimeChoice"]:
        """EfficientViT-SAM `name` in the runtime `request` resolves to on this worker (built,
        gated and chosen once; see `autolabel.tasks.runtimes`), and that choice."""
        from autolabel.tasks.model_loading import load_segmenter_runtime

        return self.cached(
            ("segmenter-runtime", name, str(random_weights), str(request)),
            lambda: load_segmenter_runtime(
                name, self, random_weights=random_weights, request=request
            ),
        )

    def detector_runtime(
        self, name: str, *, random_weights: bool, request: "RuntimeRequest"
    ) -> tuple["DetectorParts", "RuntimeChoice"]:
        """The detector `name` with its image side in the runtime `request` resolves to on this
        worker (chosen once), and that choice."""
        from autolabel.tasks.model_loading import load_detector_runtime

        return self.cached(
            ("detector-runtime", name, str(random_weights), str(request)),
            lambda: load_detector_runtime(
                name, self, random_weights=random_weights, request=request
            ),
        )

    def detector(
        self,
        name: str,
        *,
        config: "DetectionConfig",
        random_weights: bool,
        request: "RuntimeRequest | None" = None,
    ) -> "Detector":
        """The detector `name` with post-processing `config`, its image side in the runtime
        `request` resolves to (default: torch float32); its network is loaded once."""
        from autolabel.models.runtime.choice import RuntimeRequest

        chosen = request or RuntimeRequest("torch", "fp32")
        parts, _ = self.detector_runtime(name, random_weights=random_weights, request=chosen)
        return self.cached(
            ("detector", name, str(random_weights), str(chosen), repr(config)),
            lambda: parts.with_config(config),
        )

    def close(self) -> None:
        """Dispose of the engine and drop every cached object; later use raises."""
        with self._lock:
            for value in self._cache.values():
                if isinstance(value, Engine):
                    value.dispose()
            self._cache.clear()
            self._closed = True


_current: ContextVar[Resources | None] = ContextVar("autolabel_resources", default=None)


def current() -> Resources:
    """The resources bound by the running flow; `NotBoundError` outside one."""
    resources = _current.get()
    if resources is None:
        raise NotBoundError(
            "expected a flow to bind its resources (autolabel.tasks.resources.bound) "
            "before tasks run"
        )
    return resources


@contextmanager
def bound(resources: Resources) -> Iterator[Resources]:
    """Make `resources` the ones `current()` returns inside this block (and its tasks)."""
    token = _current.set(resources)
    try:
        yield resources
    finally:
        _current.reset(token)
