"""How review imports are orchestrated: the Prefect task of the `import-review` flow."""

from prefect import task

from autolabel.tasks import resources
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.review import review_import
from autolabel.tasks.review.review_import import ReviewImportRequest, ReviewImportResult


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def import_review(request: ReviewImportRequest) -> ReviewImportResult:
    """Record a review file's decisions (one transaction; a repeated file changes nothing)."""
    return review_import.import_review(request, resources.current())
