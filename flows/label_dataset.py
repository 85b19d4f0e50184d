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
from autolabel.flows.resources import configure_process
from autolabel.flows.settings import get_settings
from autolabel.storage.db.tables import RunStatus
from autolabel.tasks.ingest import plan_shards, register_images
from autolabel.tasks.label import label_shard
from autolabel.tasks.params import LabelJob, RunContext, RunSummary, ShardRef, ShardResult
from autolabel.tasks.report import (
    Progress,
    emit_planned,
    merge_seconds,
    publish_summary,
    summary_markdown,
)
from autolabel.tasks.runs import finish_run, start_run

SHARDS_IN_FLIGHT = 2
# Prefect's TaskRunner is invariant in its future type, so its own runner needs the cast.
SHARD_RUNNER = cast(
    "TaskRunner[PrefectFuture[Any]]", ThreadPoolTaskRunner(max_workers=SHARDS_IN_FLIGHT)
)


class RunAbortedError(FlowError):
    """Too many images failed; the run stopped early."""


class _Tally:
    """Running totals over finished shards."""

    def __init__(self, max_failure_fraction: float) -> None:
        self.max_failure_fraction = max_failure_fraction
        self.results: list[ShardResult] = []

    def add(self, result: ShardResult) -> None:
        self.results.append(result)

    @property
    def processed(self) -> int:
        return sum(r.images_done + r.images_failed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.images_failed for r in self.results)

    def failures(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for r in self.results:
            for reason, n in r.failures.items():
                merged[reason] = merged.get(reason, 0) + n
        return merged

    def too_many_failures(self) -> bool:
        return self.processed > 0 and self.failed / self.processed > self.max_failure_fraction


def _label_in_waves(
    shards: list[ShardRef], job: LabelJob, ctx: RunContext, progress: Progress, tally: _Tally
) -> RunStatus:
    """Submit shards keeping at most SHARDS_IN_FLIGHT running; stop submitting on abort."""
    queue = list(reversed(shards))
    while queue:
        wave: list[PrefectFuture[ShardResult]] = []
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
    logger = get_run_logger()
    settings = get_settings()
    configure_process(settings, use_device_limit=True)
    started = time.perf_counter()
    ctx = start_run(job)
    listed = register_images(job, ctx.dataset_id)
    shards = plan_shards(ctx.dataset_id, ctx.work_key, job.shard_size, job.retry_failed)
    pending = sum(len(s.image_ids) for s in shards)
    logger.info(
        "run %d: %d images listed, %d to label in %d shards",
        ctx.run_id,
        listed,
        pending,
        len(shards),
    )
    emit_planned(pending)
    tally = _Tally(job.max_failure_fraction)
    status = RunStatus.FAILED
    try:
        status = _label_in_waves(shards, job, ctx, Progress(ctx.run_id, len(shards)), tally)
    finally:
        summary = finish_run(
            ctx,
            job,
            status,
            max(listed - pending, 0),
            tally.failures(),
            merge_seconds(tally.results),
            time.perf_counter() - started,
        )
        publish_summary(ctx.run_id, summary_markdown(summary))
    if status is RunStatus.ABORTED:
        raise RunAbortedError(
            f"run {ctx.run_id} aborted: {tally.failed} of {tally.processed} images failed, more "
            f"than max_failure_fraction={job.max_failure_fraction}; failures by reason: "
            f"{tally.failures()}"
        )
    return summary
