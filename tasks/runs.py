"""Start and finish label runs: dataset, categories, versions and the run row."""

from prefect import task
from prefect.runtime import flow_run
from sqlalchemy.orm import Session

from autolabel.storage.db import queries, repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.model_versions import get_model_version
from autolabel.storage.db.tables import RunStatus
from autolabel.tasks import _resources
from autolabel.tasks.box_sources import CocoBoxes
from autolabel.tasks.label import box_source_for
from autolabel.tasks.params import LabelJob, RunContext, RunSummary
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.weights import SegmenterWeights, detector_version, resolve_segmenter


def job_categories(job: LabelJob) -> tuple[str, ...]:
    """Category names the job can produce."""
    if job.boxes_from is not None:
        source = box_source_for(job)
        if isinstance(source, CocoBoxes):
            return source.categories
    return job.prompt_set().categories


def _registered_id(session: Session, name: str | None) -> int | None:
    return None if name is None else get_model_version(session, name=name).id


def job_versions(job: LabelJob) -> tuple[str, SegmenterWeights, str]:
    """(detector version, segmenter weights, work key) of a job."""
    rt = _resources.runtime()
    segmenter = resolve_segmenter(job.segmenter, rt, random_weights=job.random_weights)
    det_version = (
        detector_version(job.detector, rt, random_weights=job.random_weights)
        if job.boxes_from is None
        else "boxes_from"
    )
    work_key = job.work_key(detector_version=det_version, segmenter_version=segmenter.version)
    return det_version, segmenter, work_key


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def start_run(job: LabelJob) -> RunContext:
    """Create (or find) the dataset and categories and insert a `running` label run."""
    det_version, segmenter, work_key = job_versions(job)
    with session_scope(_resources.engine()) as session:
        dataset_id = repository.get_or_create_dataset(session, name=job.dataset)
        category_ids = repository.ensure_categories(
            session, dataset_id=dataset_id, names=list(job_categories(job))
        )
        run_id = repository.create_label_run(
            session,
            dataset_id=dataset_id,
            work_key=work_key,
            parameters=job.model_dump(mode="json"),
            detector_model=det_version,
            segmenter_model=segmenter.version,
            model_version_id=_registered_id(session, segmenter.registered),
            flow_run_id=str(flow_run.get_id() or ""),
        )
    return RunContext(
        dataset_id=dataset_id,
        run_id=run_id,
        work_key=work_key,
        segmenter_version=segmenter.version,
        category_ids=category_ids,
    )


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def finish_run(
    ctx: RunContext,
    job: LabelJob,
    status: RunStatus,
    images_skipped: int,
    failures: dict[str, int],
    seconds: dict[str, float],
    wall_seconds: float,
) -> RunSummary:
    """Recount the run from its image results and set its final status."""
    with session_scope(_resources.engine()) as session:
        repository.refresh_run_counts(session, run_id=ctx.run_id, images_skipped=images_skipped)
        repository.finish_label_run(
            session, run_id=ctx.run_id, status=status, timings={**seconds, "wall": wall_seconds}
        )
        per_category = repository.annotation_counts_by_category(
            session, dataset_id=ctx.dataset_id, run_id=ctx.run_id
        )
        run = queries.get_label_run(session, run_id=ctx.run_id)
    return RunSummary(
        run_id=ctx.run_id,
        dataset=job.dataset,
        status=status.value,
        images_done=run.images_done,
        images_failed=run.images_failed,
        images_skipped=run.images_skipped,
        annotations=run.annotations,
        annotations_per_category=per_category,
        failures=failures,
        seconds=seconds,
        wall_seconds=wall_seconds,
    )
