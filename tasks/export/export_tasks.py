"""How exports are orchestrated: the Prefect tasks of the `export-coco` and `export-sa1b` flows,
and of review exports (`export-review`)."""

from prefect import task

from autolabel.tasks import resources
from autolabel.tasks.export import coco_export, review_export, sa1b_export
from autolabel.tasks.export.coco_export import ExportRequest, ExportResult
from autolabel.tasks.export.review_export import ReviewExportRequest, ReviewExportResult
from autolabel.tasks.export.sa1b_export import Sa1bExportRequest, Sa1bExportResult
from autolabel.tasks.retry import retry_transient


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def export_dataset(request: ExportRequest) -> ExportResult:
    """Write the COCO JSON (streaming, atomic) and the overlays."""
    return coco_export.export_dataset(request, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def export_sa1b(request: Sa1bExportRequest) -> Sa1bExportResult:
    """Write the dataset's annotated images as SA-1B tar shards under `request.output`."""
    return sa1b_export.export_sa1b(request, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def export_review(request: ReviewExportRequest) -> ReviewExportResult:
    """Write a review export (Label Studio, CVAT or FiftyOne) under `request.output`."""
    return review_export.export_review(request, resources.current())
