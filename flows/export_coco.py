"""Flow `export-coco`: a dataset (or one run) -> COCO instances JSON on local disk or S3."""

from prefect import flow

from autolabel.flows.resources import configure_process
from autolabel.flows.settings import get_settings
from autolabel.tasks.export import ExportRequest, ExportResult, export_dataset

__all__ = ["ExportRequest", "ExportResult", "export_coco"]


@flow(name="export-coco", validate_parameters=True)
def export_coco(request: ExportRequest) -> ExportResult:
    """Export `request.dataset` to `request.output`, with PNG overlays beside it."""
    configure_process(get_settings())
    result: ExportResult = export_dataset(request)
    return result
