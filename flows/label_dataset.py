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
from autolabel.flows.shard_fanout import ShardFanOut, find_shard_deployment
from autolabel.storage.db.tables import RunStatus
from autolabel.tasks import resources
from autolabel.tasks.labeling.dry_run import JobPlan, plan_job
from autolabel.tasks.labeling.job import (
    LabelJob,
    RunClaim,
    RunContext,
    RunOutcome,
    RunSummary,
    ShardRef,
)
from autolabel.tasks.labeling.label_tasks import (
    ProgressArtifact,
    finish_run,
    label_shard,
    plan_shards,
    prepare_run,
    register_job_images,
    run_heartbeat,
    start_run,
)
from autolabel.tasks.labeling.progress import ShardTally, current_sink
from autolabel.tasks.labeling.run_lease import Heartbeat
from autolabel.tasks.labeling.shard_runs import ShardRunSizer
from autolabel.tasks.resources import bound
from autolabel.tasks.tuning.job_defaults import tuned_job
from autolabel.tasks.tuning.tuning_tasks import apply_tuned_thresholds

SHARDS_IN_FLIGHT = 2
# Prefect's TaskRunner is invariant in its future type, so its own runner needs the cast.
SHARD_RUNNER = cast(
    "TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=SHARDS_IN_FLIGHT)
)


class RunAbortedError(FlowError):
    """Too many images failed; the run stopped early."""


class RunLeaseLostError(FlowError):
    """Another process declared this run crashed (its heartbeat lapsed): it stopped labeling."""


def _label_in_waves(
    shards: list[ShardRef],
    job: LabelJob,
    ctx: RunContext,
    tally: ShardTally,
    heartbeat: Heartbeat,
    retry_delays_s: tuple[float, ...],
) -> RunStatus:
    """Submit shards keeping at most SHARDS_IN_FLIGHT running; stop submitting on abort. A shard
    that fails on a transient error is retried after each of `retry_delays_s`."""
    progress = ProgressArtifact(ctx.run_id, len(shards))
    delays = list(retry_delays_s)
    shard_task = label_shard.with_options(retries=len(delays), retry_delay_seconds=delays or 0)
    queue = list(reversed(shards))
    while queue:
        wave: list[PrefectFuture[Any]] = []
        while queue and len(wave) < SHARDS_IN_FLIGHT:
            wave.append(shard_task.submit(queue.pop(), job, ctx))
        for future in as_completed(wave):
            tally.add(future.result())
            progress.shard_done()
        if tally.too_many_failures():
            return RunStatus.ABORTED
        if heartbeat.lost:
            raise _lease_lost(ctx)
    return RunStatus.COMPLETED


def _lease_lost(ctx: RunContext) -> RunLeaseLostError:
    return RunLeaseLostError(
        f"run {ctx.run_id} was declared crashed by another process after its heartbeat "
        "lapsed; stopped labeling (rerun the job to finish it)"
    )


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
    started = time.perf_counter()
    job = apply_tuned_thresholds(job)  # the dataset's tuned thresholds, unless the job opts out
    claim = start_run(job)
    tally = ShardTally(job.max_failure_fraction)
    with run_heartbeat(claim.run_id) as heartbeat:
        try:
            status, skipped = _label_claimed(job, claim, tally, heartbeat)
        except BaseException as exc:
            _record_failure(claim, job, exc, tally, time.perf_counter() - started)
            raise
    reason = None
    if status is RunStatus.ABORTED:
        reason = (
            f"{tally.failed} of {tally.processed} images failed, more than "
            f"max_failure_fraction={job.max_failure_fraction}; failures by reason: "
            f"{tally.failures()}"
        )
    outcome = RunOutcome(
        status=status,
        reason=reason,
        images_skipped=skipped,
        failures=tally.failures(),
        seconds=tally.seconds(),
        wall_seconds=time.perf_counter() - started,
    )
    summary = finish_run(claim, job, outcome)
    if reason is not None:
        raise RunAbortedError(f"run {claim.run_id} aborted: {reason}")
    return summary


def _label_claimed(
    job: LabelJob, claim: RunClaim, tally: ShardTally, heartbeat: Heartbeat
) -> tuple[RunStatus, int]:
    """Everything a claimed run does before it finishes: (final status, images skipped)."""
    logger = get_run_logger()
    ctx = prepare_run(job, claim)
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
    skipped = max(listed - pending, 0)
    settings = get_settings()
    deployment = None
    if settings.prefect_api == "server" and shards:
        deployment = find_shard_deployment(settings.labeling.shard_deployment)
    if deployment is None:
        delays = settings.labeling.shard_retry_delays_s
        return _label_in_waves(shards, job, ctx, tally, heartbeat, delays), skipped
    labeling = settings.labeling
    sizer = ShardRunSizer(
        images_per_run=labeling.images_per_shard_run,
        runs_in_flight=min(
            labeling.shard_runs_in_flight, job.max_gpus or labeling.shard_runs_in_flight
        ),
        max_startup_fraction=labeling.max_startup_fraction,
    )
    logger.info(
        "run %d: shards on deployment %s, at most %d shard runs at once",
        ctx.run_id,
        labeling.shard_deployment,
        sizer.runs_in_flight,
    )
    fan_out = ShardFanOut(
        deployment,
        job,
        ctx,
        resources=resources.current(),
        sizer=sizer,
        attempts=labeling.shard_run_attempts,
        tally=tally,
        heartbeat=heartbeat,
        on_progress=current_sink().written,
        on_shard_done=ProgressArtifact(ctx.run_id, len(shards)).shard_done,
    )
    status = fan_out.run(shards)
    if status is RunStatus.CRASHED:
        raise _lease_lost(ctx)
    return status, skipped


def _record_failure(
    claim: RunClaim, job: LabelJob, exc: BaseException, tally: ShardTally, wall: float
) -> None:
    """Give the run its final status after `exc` stopped it: `failed` for an error, `aborted`
    for an interruption (Ctrl-C, termination). A failure to record is logged, never raised over
    the error that stopped the run."""
    interrupted = not isinstance(exc, Exception)
    outcome = RunOutcome(
        status=RunStatus.ABORTED if interrupted else RunStatus.FAILED,
        reason=f"{'interrupted' if interrupted else 'error'}: {type(exc).__name__}: {exc}",
        failures=tally.failures(),
        seconds=tally.seconds(),
        wall_seconds=wall,
    )
    try:
        finish_run(claim, job, outcome)
    except Exception as record_error:  # noqa: BLE001 - the original error is what the caller sees
        get_run_logger().error("could not record the end of run %d: %s", claim.run_id, record_error)


def plan_label_job(job: LabelJob) -> JobPlan:
    """The job's dry run in this process (no flow run, nothing written): see `plan_job`; the
    dataset's tuned thresholds apply as in a run."""
    res = process_resources(get_settings())
    return plan_job(tuned_job(job, res)[0], res)
