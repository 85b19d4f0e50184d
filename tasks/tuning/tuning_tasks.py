"""How tuning is orchestrated: the Prefect tasks of the `tune-thresholds` and `compare-prompts`
flows, and the one labeling runs use to take tuned thresholds by default.

Each task resolves the flow's bound resources, calls the plain-Python core (`sample_scoring`,
`thresholds`, `prompt_compare`, `job_defaults`) and returns small serialisable models; model work
holds a slot of the host's device limit (if any), as label shards do.
"""

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from autolabel.storage.db.category_thresholds import save_category_thresholds
from autolabel.storage.db.engine import session_scope
from autolabel.tasks import resources
from autolabel.tasks.labeling.job import LabelJob
from autolabel.tasks.labeling.label_tasks import device_limit_slot
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.tuning import job_defaults, prompt_compare, sample_scoring, thresholds
from autolabel.tasks.tuning.prompt_compare import CompareRequest, PromptComparison
from autolabel.tasks.tuning.sample_scoring import SampleRequest, TuningSource
from autolabel.tasks.tuning.scores import MatchBy, ScoredSample
from autolabel.tasks.tuning.thresholds import TuningReport, tuning_report


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def resolve_sample(request: SampleRequest) -> TuningSource:
    """The dataset, the job to re-run and the reviewed images sampled."""
    return sample_scoring.resolve_source(request, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def score_reviewed_sample(source: TuningSource, match_by: MatchBy) -> ScoredSample:
    """Re-run the job's models on the sample at the floor and score every candidate."""
    with device_limit_slot():
        return sample_scoring.score_sample(source, resources.current(), match_by=match_by)


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def choose_thresholds(
    request: thresholds.TuneRequest, source: TuningSource, sample: ScoredSample
) -> TuningReport:
    """Choose each category's thresholds, store the changed ones (unless a dry run), and publish
    the before/after table."""
    report = tuning_report(request, source, sample)
    if not request.dry_run:
        with session_scope(resources.current().engine) as session:
            save_category_thresholds(
                session, dataset_id=source.dataset_id, tuned=thresholds.tuned_rows(report)
            )
        report = report.model_copy(update={"stored": True})
    create_markdown_artifact(
        thresholds.report_markdown(report),
        key=f"tune-thresholds-{source.dataset_id}",
        description=f"tuned thresholds of dataset {request.dataset}",
    )
    return report


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def compare_phrasings(request: CompareRequest, source: TuningSource) -> PromptComparison:
    """Run each phrasing on the sample, rank them, and publish the ranking."""
    with device_limit_slot():
        comparison = prompt_compare.compare_prompts(request, source, resources.current())
    create_markdown_artifact(
        prompt_compare.comparison_markdown(comparison),
        key=f"compare-prompts-{source.dataset_id}",
        description=f"phrasings of {comparison.category} in dataset {request.dataset}",
    )
    return comparison


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def apply_tuned_thresholds(job: LabelJob) -> LabelJob:
    """The job with its dataset's tuned thresholds for the categories it sets none for."""
    tuned, used = job_defaults.tuned_job(job, resources.current())
    if used:
        get_run_logger().info(
            "dataset %r: tuned thresholds used (box/text): %s",
            job.dataset,
            ", ".join(f"{c} {t.box:.2f}/{t.text:.2f}" for c, t in used.items()),
        )
    return tuned
