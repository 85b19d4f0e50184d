"""Flow `compare-prompts`: which phrasing of a category recovers its reviewed labels best.

    resolve the sample (dataset, the job to re-run, reviewed images)
    -> run each phrasing on it and rank them, publishing the ranking

See docs/tuning.md.
"""

from prefect import flow

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.resources import bound
from autolabel.tasks.tuning.prompt_compare import CompareRequest, PromptComparison
from autolabel.tasks.tuning.tuning_tasks import compare_phrasings, resolve_sample

__all__ = ["CompareRequest", "PromptComparison", "compare_prompts"]


@flow(name="compare-prompts", validate_parameters=True)
def compare_prompts(request: CompareRequest) -> PromptComparison:
    """Rank `request.phrasings` of `request.category` on the dataset's reviewed images."""
    with bound(process_resources(get_settings(), use_device_limit=True)):
        source = resolve_sample(request)
        comparison: PromptComparison = compare_phrasings(request, source)
    return comparison
