"""Start and finish label runs: dataset, categories, versions and the run row."""

from sqlalchemy.orm import Session

from autolabel.storage.db import queries, repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.model_versions import get_model_version
from autolabel.tasks.labeling.box_sources import job_categories
from autolabel.tasks.labeling.job import LabelJob, RunContext, RunOutcome, RunSummary
from autolabel.tasks.model_loading import SegmenterWeights, detector_version, resolve_segmenter
from autolabel.tasks.resources import Resources


def _registered_id(session: Session, name: str | None) -> int | None:
    return None if name is None else get_model_version(session, name=name).id


def job_versions(job: LabelJob, resources: Resources) -> tuple[str, SegmenterWeights, str]:
    """(detector version, segmenter weights, work key) of a job."""
    segmenter = resolve_segmenter(job.segmenter, resources, random_weights=job.random_weights)
    det_version = (
        detector_version(job.detector, resources, random_weights=job.random_weights)
        if job.boxes_from is None
        else "boxes_from"
    )
    work_key = job.work_key(detector_version=det_version, segmenter_version=segmenter.version)
    return det_version, segmenter, work_key


def start_run(job: LabelJob, resources: Resources, *, flow_run_id: str) -> RunContext:
    """Create (or find) the dataset and categories and insert a `running` label run."""
    det_version, segmenter, work_key = job_versions(job, resources)
    with session_scope(resources.engine) as session:
        dataset_id = repository.get_or_create_dataset(session, name=job.dataset)
        category_ids = repository.ensure_categories(
            session, dataset_id=dataset_id, names=list(job_categories(job, resources))
        )
        run_id = repository.create_label_run(
            session,
            dataset_id=dataset_id,
            work_key=work_key,
            parameters=job.model_dump(mode="json"),
            detector_model=det_version,
            segmenter_model=segmenter.version,
            model_version_id=_registered_id(session, segmenter.registered),
            flow_run_id=flow_run_id,
        )
    return RunContext(
        dataset_id=dataset_id,
        run_id=run_id,
        work_key=work_key,
        segmenter_version=segmenter.version,
        category_ids=category_ids,
    )


def finish_run(
    ctx: RunContext,
    job: LabelJob,
    outcome: RunOutcome,
    resources: Resources,
) -> RunSummary:
    """Recount the run from its image results and set its final status."""
    status, images_skipped = outcome.status, outcome.images_skipped
    failures, seconds, wall_seconds = outcome.failures, outcome.seconds, outcome.wall_seconds
    with session_scope(resources.engine) as session:
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
