"""Flow `sample-for-review`: the images most worth reviewing within a budget, saved as JSON and,
optionally, exported for review (Label Studio, CVAT, FiftyOne) as exactly those images.

    stored annotations -> [choose_for_review] -> selection -> [save_selection] -> JSON
                                                          -> [export_selection] -> review tool files
"""

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.export.review_export import ReviewExportRequest, ReviewExportResult
from autolabel.tasks.resources import bound
from autolabel.tasks.sampling.review_sample import ReviewSelection, SampleRequest
from autolabel.tasks.sampling.sampling_tasks import (
    choose_for_review,
    export_selection,
    save_selection,
)

__all__ = ["ReviewExportRequest", "SampleRequest", "SampleReviewResult", "sample_for_review"]


class SampleReviewResult(BaseModel):
    """The selection, where it was saved, and the export of its images (when asked for)."""

    model_config = ConfigDict(frozen=True)

    selection: ReviewSelection
    selection_file: str | None = None
    export: ReviewExportResult | None = None


@flow(name="sample-for-review", validate_parameters=True)
def sample_for_review(
    request: SampleRequest, output: str | None = None, export: ReviewExportRequest | None = None
) -> SampleReviewResult:
    """Choose the review set of `request`; save it to `output` (JSON) and write `export` (its
    `image_ids` are replaced by the chosen images) when given."""
    with bound(process_resources(get_settings())):
        selection: ReviewSelection = choose_for_review(request)
        get_run_logger().info(
            "chose %d of %d images (%s budget %d, used %d)",
            len(selection.chosen),
            selection.scored_images,
            selection.policy.unit,
            selection.policy.budget,
            selection.budget_used,
        )
        saved: str | None = save_selection(selection, output) if output else None
        exported: ReviewExportResult | None = (
            export_selection(selection, export) if export is not None else None
        )
    return SampleReviewResult(selection=selection, selection_file=saved, export=exported)
