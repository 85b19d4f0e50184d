"""How sampling for review is orchestrated: the Prefect tasks of the flow `sample-for-review`."""

from prefect import task

from autolabel.tasks import resources
from autolabel.tasks.export.review_export import ReviewExportRequest, ReviewExportResult
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.sampling import review_sample
from autolabel.tasks.sampling.review_sample import ReviewSelection, SampleRequest


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def choose_for_review(request: SampleRequest) -> ReviewSelection:
    """Score the stored annotations and choose the review set within the budget."""
    return review_sample.sample_for_review(request, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def save_selection(selection: ReviewSelection, output: str) -> str:
    """Write the selection as JSON (local file or store URL); returns where."""
    return review_sample.save_selection(selection, output, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def export_selection(
    selection: ReviewSelection, request: ReviewExportRequest
) -> ReviewExportResult:
    """Write a review export of exactly the selection's images."""
    return review_sample.export_selection(selection, request, resources.current())
