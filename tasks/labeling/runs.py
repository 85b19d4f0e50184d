"""Start and finish label runs: the dataset claim, categories, versions and the run row."""

import logging

from sqlalchemy.orm import Session

from autolabel.storage.db import label_runs, queries, repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.model_versions import get_model_version
from autolabel.tasks.labeling.box_sources import MANY_PASSES, detector_passes, job_categories
from autolabel.tasks.labeling.job import LabelJob, RunClaim, RunContext, RunOutcome, RunSummary
from autolabel.tasks.labeling.run_lease import claim_dataset, this_process
from autolabel.tasks.model_loading import SegmenterWeights, detector_version, resolve_segmenter
from autolabel.tasks.resources import Resources

logger = logging.getLogger(__name__)


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


def start_run(job: LabelJob, resources: Resources, *, flow_run_id: str) -> RunClaim:
    """Create (or find) the dataset and claim it with a `running` run.

    Raises:
        DatasetBusyError: Another job's run is labeling the dataset (this job's run is recorded
            `failed`, naming it).
    """
    with session_scope(resources.engine) as session:
        dataset_id = repository.get_or_create_dataset(session, name=job.dataset)
    run_id = claim_dataset(
        resources.engine,
        dataset_id=dataset_id,
        parameters=job.model_dump(mode="json"),
        flow_run_id=flow_run_id,
        owner=this_process(),
    )
    return RunClaim(dataset_id=dataset_id, run_id=run_id)


def prepare_run(job: LabelJob, claim: RunClaim, resources: Resources) -> RunContext:
    """Resolve the models (weights checked) and categories, and record them on the run."""
    det_version, segmenter, work_key = job_versions(job, resources)
    names = list(job_categories(job, resources))
    passes = detector_passes(job, resources)
    if passes > MANY_PASSES:
        logger.warning(
            "run %d: %d categories take %d detector passes per image (one per ~250 prompt "
            "tokens); labeling costs about %d times a one-pass prompt",
            claim.run_id,
            len(names),
            passes,
            passes,
        )
    with session_scope(resources.engine) as session:
        category_ids = repository.ensure_categories(
            session, dataset_id=claim.dataset_id, names=names
        )
        label_runs.set_run_versions(
            session,
            run_id=claim.run_id,
            work_key=work_key,
            detector_model=det_version,
            segmenter_model=segmenter.version,
            model_version_id=_registered_id(session, segmenter.registered),
        )
    return RunContext(
        dataset_id=claim.dataset_id,
        run_id=claim.run_id,
        work_key=work_key,
        segmenter_version=segmenter.version,
        category_ids=category_ids,
    )


def finish_run(
    claim: RunClaim,
    job: LabelJob,
    outcome: RunOutcome,
    resources: Resources,
) -> RunSummary:
    """Recount the run from its image results and set its final status and reason."""
    with session_scope(resources.engine) as session:
        label_runs.refresh_run_counts(
            session, run_id=claim.run_id, images_skipped=outcome.images_skipped
        )
        label_runs.finish_label_run(
            session,
            run_id=claim.run_id,
            status=outcome.status,
            reason=outcome.reason,
            timings={**outcome.seconds, "wall": outcome.wall_seconds},
        )
        per_category = repository.annotation_counts_by_category(
            session, dataset_id=claim.dataset_id, run_id=claim.run_id
        )
        run = queries.get_label_run(session, run_id=claim.run_id)
    return RunSummary(
        run_id=claim.run_id,
        dataset=job.dataset,
        status=run.status,
        reason=run.status_reason,
        images_done=run.images_done,
        images_failed=run.images_failed,
        images_skipped=run.images_skipped,
        annotations=run.annotations,
        annotations_per_category=per_category,
        failures=outcome.failures,
        seconds=outcome.seconds,
        wall_seconds=outcome.wall_seconds,
    )
