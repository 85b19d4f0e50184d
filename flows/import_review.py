"""Flow `import-review`: a review tool's export back in, and the reviewed labels to retraining.

review file (Label Studio / CVAT / FiftyOne export) -> accepted / corrected / rejected /
added, with history -> (with `sa1b_output`) the dataset's accepted labels as SA-1B shards
(`export-sa1b --accepted-only`) -> event `autolabel.sa1b.landed` -> `retrain-sam`
"""

from prefect import flow, get_run_logger

from autolabel.flows.resources import process_resources
from autolabel.flows.sa1b import export_sa1b_shards
from autolabel.flows.settings import get_settings
from autolabel.tasks.export.sa1b_export import Sa1bExportRequest, Sa1bExportResult
from autolabel.tasks.resources import bound
from autolabel.tasks.review.review_import import ReviewImportRequest, ReviewImportResult
from autolabel.tasks.review.review_tasks import import_review


def accepted_to_sa1b(result: ReviewImportResult, output: str) -> Sa1bExportResult | None:
    """Export the dataset's accepted labels (all of them, as of this import) to
    `<output>/review-<import id>/` and announce them, when this import accepted any (a repeated
    import accepts none: nothing is written or announced)."""
    if result.already_imported or not result.accepted_labels:
        return None
    folder = f"{output.rstrip('/')}/review-{result.import_id:06d}"
    return export_sa1b_shards(
        Sa1bExportRequest(dataset=result.dataset, output=folder, accepted_only=True)
    )


@flow(name="import-review", validate_parameters=True)
def import_review_flow(
    request: ReviewImportRequest, sa1b_output: str | None = None
) -> ReviewImportResult:
    """Record the review; with `sa1b_output`, hand the accepted labels to retraining."""
    with bound(process_resources(get_settings())):
        result: ReviewImportResult = import_review(request)
    logger = get_run_logger()
    logger.info(
        "review %s: %d images, %d accepted, %d corrected, %d rejected, %d added%s",
        request.input,
        result.images,
        result.accepted,
        result.corrected,
        result.rejected,
        result.added,
        " (imported before: no change)" if result.already_imported else "",
    )
    if sa1b_output is not None:
        shards = accepted_to_sa1b(result, sa1b_output)
        if shards is not None:
            logger.info("accepted labels: %d shards at %s", len(shards.shards), shards.url)
    return result
