"""Flow `export-sa1b`: stored annotations become SA-1B training shards, and retraining hears of it.

annotations (a dataset, a run, or only reviewer-accepted ones) -> SA-1B tar shards in object
storage -> event `autolabel.sa1b.landed` (payload: the shards' URL) -> the `retrain-sam`
deployment's trigger starts a retraining on them
"""

from prefect import flow, get_run_logger

from autolabel.flows.resources import configure_process
from autolabel.flows.settings import get_settings
from autolabel.tasks.sa1b_export import (
    Sa1bExportRequest,
    Sa1bExportResult,
    announce_sa1b,
    export_sa1b,
)

__all__ = ["Sa1bExportRequest", "Sa1bExportResult", "export_sa1b_shards"]


@flow(name="export-sa1b", validate_parameters=True)
def export_sa1b_shards(request: Sa1bExportRequest) -> Sa1bExportResult:
    """Write the shards, then announce them to the retraining deployment."""
    configure_process(get_settings())
    result: Sa1bExportResult = export_sa1b(request)
    if result.shards and announce_sa1b(result.url, shards=len(result.shards), images=result.images):
        get_run_logger().info("announced %d shards at %s", len(result.shards), result.url)
    return result
