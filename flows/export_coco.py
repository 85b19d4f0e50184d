"""Flow `export-coco`: a dataset (or one run) -> COCO instances JSON on local disk or S3."""

from prefect import flow

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.export.coco_export import ExportRequest, ExportResult
from autolabel.tasks.export.export_tasks import export_dataset
from autolabel.tasks.resources import bound

__all__ = ["ExportRequest", "ExportResult", "export_coco"]


@flow(name="export-coco", validate_parameters=True)
def export_coco(request: ExportRequest) -> ExportResult:
    """Export `request.dataset` to `request.output`, with PNG overlays beside it."""
    with bound(process_resources(get_settings())):
        result: ExportResult = export_dataset(request)
    return result
