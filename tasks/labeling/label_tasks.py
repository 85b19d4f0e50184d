"""How labeling is orchestrated: the Prefect tasks and artifacts of the `autolabel-dataset` flow.

Each task resolves the flow's bound resources, calls the plain-Python core
(`runs`, `sources`, `shard`) and returns small references; only transient failures are retried.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from autolabel.tasks import resources
from autolabel.tasks.labeling import runs, sources
from autolabel.tasks.labeling.box_sources import box_source_for
from autolabel.tasks.labeling.job import (
    LabelJob,
    RunClaim,
    RunContext,
    RunOutcome,
    RunSummary,
    ShardRef,
    ShardResult,
)
from autolabel.tasks.labeling.progress import current_sink, summary_markdown
from autolabel.tasks.labeling.run_lease import Heartbeat
from autolabel.tasks.labeling.shard import run_shard
from autolabel.tasks.retry import retry_transient


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def start_run(job: LabelJob) -> RunClaim:
    """Create (or find) the dataset and claim it with a `running` label run."""
    flow_run_id = str(flow_run.get_id() or "")
    return runs.start_run(job, resources.current(), flow_run_id=flow_run_id)


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def prepare_run(job: LabelJob, claim: RunClaim) -> RunContext:
    """Resolve the run's model versions (weights checked) and categories."""
    return runs.prepare_run(job, claim, resources.current())


@contextmanager
def device_limit_slot() -> Iterator[None]:
    """Hold one slot of this host's device limit (if it has one) while the block runs: model
    work (label shards, tuning's re-runs) never exceeds the limit a worker was started with."""
    limit = resources.current().config.device_limit
    if limit is None:
        yield
        return
    with concurrency(
        limit,
        occupy=1,
        strict=True,
        lease_duration=resources.DEVICE_LEASE_SECONDS,
        raise_on_lease_renewal_failure=False,
    ):
        yield


@contextmanager
def run_heartbeat(run_id: int) -> Iterator[Heartbeat]:
    """Renew the run's heartbeat while the block runs (see `run_lease.Heartbeat`)."""
    with Heartbeat.of_run(resources.current().engine, run_id) as beat:
        yield beat


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def register_job_images(job: LabelJob, dataset_id: int) -> int:
    """Upsert the job's images into the dataset; returns how many were listed."""
    return sources.register_job_images(job, dataset_id, resources.current())


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def plan_shards(job: LabelJob, ctx: RunContext) -> list[ShardRef]:
    """The shards of image ids still to do under the run's work key."""
    return sources.plan_shards(ctx.dataset_id, job, ctx.work_key, resources.current())


@task(retry_condition_fn=retry_transient, task_run_name="label-shard-{shard.index}")
def label_shard(shard: ShardRef, job: LabelJob, ctx: RunContext) -> ShardResult:
    """Label one shard, holding a slot of this host's device limit (if any) while it runs.
    Its retries (transient errors only) are the flow's to set: `with_options(retries=...)`."""
    res = resources.current()
    source = box_source_for(job, res)
    sink = current_sink()
    with device_limit_slot():
        return run_shard(shard, job, ctx, resources=res, box_source=source, on_written=sink.written)


@task(retries=3, retry_delay_seconds=[2, 10, 30], retry_condition_fn=retry_transient)
def finish_run(claim: RunClaim, job: LabelJob, outcome: RunOutcome) -> RunSummary:
    """Recount the run from its image results, set its final status, publish the summary."""
    summary = runs.finish_run(claim, job, outcome, resources.current())
    create_markdown_artifact(
        summary_markdown(summary),
        key=f"autolabel-run-{claim.run_id}-summary",
        description="label run summary",
    )
    return summary


class ProgressArtifact:
    """A Prefect progress artifact for one run, updated once per finished shard."""

    def __init__(self, run_id: int, total_shards: int) -> None:
        self.total = max(total_shards, 1)
        self.finished = 0
        created = create_progress_artifact(
            progress=0.0 if total_shards else 100.0,
            key=f"autolabel-run-{run_id}-progress",
            description=f"label run {run_id}: shards finished",
        )
        if not isinstance(created, UUID):  # only the async call returns a coroutine
            raise TypeError(f"expected an artifact id, got {type(created).__name__}")
        self._id = created

    def shard_done(self) -> None:
        self.finished += 1
        update_progress_artifact(self._id, progress=100.0 * self.finished / self.total)
