"""Turn `Settings` into the plain values and clients that lower layers take."""

from sqlalchemy.engine import URL, make_url

from autolabel.flows.settings import Settings
from autolabel.models.registry import MODEL_SPECS
from autolabel.models.weights import WeightFile
from autolabel.storage.config import S3Config
from autolabel.storage.objectstore import ObjectStore, open_store


def s3_config(settings: Settings) -> S3Config:
    """The S3 client settings (credentials stay with boto3's chain)."""
    return S3Config(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        path_style=settings.s3_path_style,
    )


def open_configured_store(settings: Settings, url: str | None = None) -> ObjectStore:
    """The object store at `url`, or the configured default store (created when embedded)."""
    if url is None and settings.storage_url is None:
        (settings.home / "store").mkdir(parents=True, exist_ok=True)
    return open_store(url or settings.resolved_storage_url, s3=s3_config(settings))


def database_url(settings: Settings) -> URL:
    """The database URL with the secret password (if configured apart) filled in.

    The embedded SQLite default's folder is created on first use.
    """
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    url = make_url(settings.resolved_database_url)
    if settings.database_password is not None:
        url = url.set(password=settings.database_password.get_secret_value())
    return url


def known_weight_files() -> list[tuple[str, WeightFile]]:
    """(model name, weights file) of every released model autolabel can load."""
    from autolabel.models.grounding_dino.registry import DETECTOR_SPECS

    files = [(name, spec.weights) for name, spec in sorted(MODEL_SPECS.items()) if spec.released]
    files += [(name, spec.weights) for name, spec in sorted(DETECTOR_SPECS.items())]
    return files
