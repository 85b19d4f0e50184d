"""Flows `export-sa1b` and `ingest-sa1b`: SA-1B training data lands, and retraining hears of it.

    export-sa1b: annotations (a dataset, a run, or only reviewer-accepted ones) -> SA-1B tar
    shards in object storage -> event `autolabel.sa1b.landed` (payload: the shards' URL)
    ingest-sa1b: a local folder of SA-1B shards -> checked, uploaded -> the same event

The `retrain-sam` deployment's trigger starts a retraining on the announced URL.
"""

from pathlib import Path

from prefect import flow, get_run_logger

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.events import announce_sa1b
from autolabel.tasks.export.export_tasks import export_sa1b
from autolabel.tasks.export.sa1b_export import Sa1bExportRequest, Sa1bExportResult
from autolabel.tasks.ingest.ingest_tasks import upload_sa1b_shards
from autolabel.tasks.ingest.sa1b_ingest import Sa1bIngestResult
from autolabel.tasks.resources import bound

__all__ = [
    "Sa1bExportRequest",
    "Sa1bExportResult",
    "Sa1bIngestResult",
    "export_sa1b_shards",
    "ingest_sa1b_shards",
]


@flow(name="export-sa1b", validate_parameters=True)
def export_sa1b_shards(request: Sa1bExportRequest) -> Sa1bExportResult:
    """Write the shards, then announce them to the retraining deployment."""
    with bound(process_resources(get_settings())):
        result: Sa1bExportResult = export_sa1b(request)
    if result.shards and announce_sa1b(result.url, shards=len(result.shards), images=result.images):
        get_run_logger().info("announced %d shards at %s", len(result.shards), result.url)
    return result


@flow(name="ingest-sa1b", validate_parameters=True)
def ingest_sa1b_shards(folder: Path, to: str) -> Sa1bIngestResult:
    """Upload the readable SA-1B shards of a local folder to `to`, then announce them."""
    with bound(process_resources(get_settings())):
        result: Sa1bIngestResult = upload_sa1b_shards(str(folder), to)
    if result.uploaded and announce_sa1b(to, shards=len(result.uploaded), images=0):
        get_run_logger().info("announced %d shards at %s", len(result.uploaded), to)
    return result
