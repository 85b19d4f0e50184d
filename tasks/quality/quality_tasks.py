"""How quality reports are orchestrated: the Prefect tasks of the `quality-report` flow (write
the page, publish its tables as artifacts)."""

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from autolabel.tasks import resources
from autolabel.tasks.quality import quality_report
from autolabel.tasks.quality.report_data import QualityRequest, QualityResult
from autolabel.tasks.quality.report_summary import artifact_key, summary_markdown, summary_table
from autolabel.tasks.retry import retry_transient


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def write_quality_report(request: QualityRequest) -> QualityResult:
    """Compute the report and write its HTML page to `request.output`."""
    return quality_report.write_quality_report(request, resources.current())


@task
def publish_quality_report(result: QualityResult) -> None:
    """The report's tables as Prefect artifacts: markdown with a link to the page, and the
    per-category table."""
    key = artifact_key(result)
    create_markdown_artifact(summary_markdown(result), key=key, description="quality report")
    create_table_artifact(
        summary_table(result), key=f"{key}-table", description="quality report per category"
    )
