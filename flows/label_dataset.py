"""Flow `autolabel-dataset`: images in a bucket + text prompts -> COCO annotations in the database.

    start run -> register images -> plan shards of pending images -> label shards (in waves)
    -> finish run (counts, timings) -> summary artifact

A rerun of the same job skips images already done under its work key; images that are new or
changed since are the only ones labeled. The run aborts (status `aborted`, flow failed) when more
than `max_failure_fraction` of the images it processed failed.
"""

import time
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from autolabel.flows.errors import FlowError
from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.storage.db.tables import RunStatus
from autolabel.tasks.labeling.dry_run import JobPlan, plan_job
from autolabel.tasks.labeling.job import LabelJob, RunContext, RunOutcome, RunSummary, ShardRef
from autolabel.tasks.labeling.label_tasks import (
    ProgressArtifact,
    finish_run,
    label_shard,
    plan_shards,
    register_job_images,
    start_run,
)
from autolabel.tasks.labeling.progress import ShardTally, current_sink
from autolabel.tasks.resources import bound

SHARDS_IN_FLIGHT = 2
# Prefect's TaskRunner is invariant in its future type, so its own runner needs the cast.
SHARD_RUNNER = cast(
    "TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=SHARDS_IN_FLIGHT)
)


class RunAbortedError(FlowError):
    """Too many images failed; the run stopped early."""


def _label_in_waves(
    shards: list[ShardRef],
    job: LabelJob,
    ctx: RunContext,
    progress: ProgressArtifact,
    tally: ShardTally,
) -> RunStatus:
    """Submit shards keeping at most SHARDS_IN_FLIGHT running; stop submitting on abort."""
    queue = list(reversed(shards))
    while queue:
        wave: list[PrefectFuture[Any]] = []
        while queue and len(wave) < SHARDS_IN_FLIGHT:
            wave.append(label_shard.submit(queue.pop(), job, ctx))
        for future in as_completed(wave):
            tally.add(future.result())
            progress.shard_done()
        if tally.too_many_failures():
            return RunStatus.ABORTED
    return RunStatus.COMPLETED


@flow(
    name="autolabel-dataset",
    task_runner=SHARD_RUNNER,
    validate_parameters=True,
)
def autolabel_dataset(job: LabelJob) -> RunSummary:
    """Label every pending image of `job.source` into dataset `job.dataset`."""
    with bound(process_resources(get_settings(), use_device_limit=True)):
        return _label(job)


def _label(job: LabelJob) -> RunSummary:
    logger = get_run_logger()
    started = time.perf_counter()
    ctx = start_run(job)
    listed = register_job_images(job, ctx.dataset_id)
    shards = plan_shards(job, ctx)
    pending = sum(len(s.image_ids) for s in shards)
    logger.info(
        "run %d: %d images listed, %d to label in %d shards",
        ctx.run_id,
        listed,
        pending,
        len(shards),
    )
    current_sink().planned(pending)
    tally = ShardTally(job.max_failure_fraction)
    status = RunStatus.FAILED
    try:
        status = _label_in_waves(shards, job, ctx, ProgressArtifact(ctx.run_id, len(shards)), tally)
    finally:
        outcome = RunOutcome(
            status=status,
            images_skipped=max(listed - pending, 0),
            failures=tally.failures(),
            seconds=tally.seconds(),
            wall_seconds=time.perf_counter() - started,
        )
        summary = finish_run(ctx, job, outcome)
    if status is RunStatus.ABORTED:
        raise RunAbortedError(
            f"run {ctx.run_id} aborted: {tally.failed} of {tally.processed} images failed, more "
            f"than max_failure_fraction={job.max_failure_fraction}; failures by reason: "
            f"{tally.failures()}"
        )
    return summary


def plan_label_job(job: LabelJob) -> JobPlan:
    """The job's dry run in this process (no flow run, nothing written): see `plan_job`."""
    return plan_job(job, process_resources(get_settings()))
