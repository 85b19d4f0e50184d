"""Flow `quality-report`: a dataset (or one run) -> an HTML quality report (counts, score
histograms, agreement with reviewed labels, sample overlays) on local disk or in a store, and
its tables as Prefect artifacts."""

from prefect import flow

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.quality.quality_tasks import publish_quality_report, write_quality_report
from autolabel.tasks.quality.report_data import QualityRequest, QualityResult
from autolabel.tasks.resources import bound

__all__ = ["QualityRequest", "QualityResult", "quality_report"]


@flow(name="quality-report", validate_parameters=True)
def quality_report(request: QualityRequest) -> QualityResult:
    """Write the report of `request.dataset` to `request.output`, then publish its tables."""
    with bound(process_resources(get_settings())):
        result: QualityResult = write_quality_report(request)
    publish_quality_report(result)
    return result
