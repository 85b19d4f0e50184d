"""Shards run as their own flow runs on a work pool: sizing, one attempt, and what is left after
a crash (no Prefect here; `autolabel.flows.label_shard` and `autolabel.flows.shard_fanout` are
the Prefect side).

A job against a Prefect server hands its shards to a shard deployment: each flow run is a new
process that pays a start-up (interpreter and imports, weights, runtime engines) before its first
image, so the start-up is measured and recorded with every attempt
(`ShardResult.seconds["startup"]`) and shard runs are sized from it (`ShardRunSizer`). Every
attempt is a `label_shards` row: the job's process reads progress and results from it, and a
rerun after a crash labels only what the dead attempt had not stored (`remaining_images`).
"""

import functools
import math
import os
import statistics
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from autolabel.storage.db import label_shards, queries, repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.tables import RunStatus, ShardStatus
from autolabel.tasks.labeling.box_sources import box_source_for
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.run_lease import HEARTBEAT_SECONDS, Heartbeat, this_process
from autolabel.tasks.labeling.shard import chosen_runtimes, run_shard
from autolabel.tasks.resources import Resources


class ShardAttemptError(RuntimeError):
    """An attempt that must not run: its run has ended, or this attempt already ran."""


class ShardLeaseLostError(RuntimeError):
    """The job's process declared this attempt crashed (its heartbeat lapsed): it stopped."""


class ShardRunSizer:
    """How many images the next shard run gets.

    `images_per_run` until attempts have completed; then enough that the start-up measured on them
    (median) is `max_startup_fraction` of a run at their measured pace (median images per second
    after start-up), but at most `MAX_GROWTH` times `images_per_run` (0 keeps `images_per_run`).
    Never more than an even share of the images left over the runs in flight, so that a small job,
    or the end of a large one, keeps every worker busy.
    """

    MAX_GROWTH = 16

    def __init__(
        self, *, images_per_run: int, runs_in_flight: int, max_startup_fraction: float
    ) -> None:
        self.images_per_run, self.runs_in_flight = images_per_run, runs_in_flight
        self.max_startup_fraction = max_startup_fraction
        self._startups: list[float] = []
        self._rates: list[float] = []

    def observe(self, result: ShardResult) -> None:
        """Learn from a completed attempt's `startup` and `shard_wall` seconds."""
        startup = result.seconds.get("startup", 0.0)
        working = result.seconds.get("shard_wall", 0.0) - startup
        images = result.images_done + result.images_failed
        if startup > 0 and working > 0 and images > 0:
            self._startups.append(startup)
            self._rates.append(images / working)

    def target(self) -> int:
        """Images per run for the start-up budget (before the even-share bound)."""
        f = self.max_startup_fraction
        if f <= 0 or not self._startups:
            return self.images_per_run
        wanted = statistics.median(self._startups) * statistics.median(self._rates) * (1 - f) / f
        return max(1, min(math.ceil(wanted), self.MAX_GROWTH * self.images_per_run))

    def size(self, images_left: int) -> int:
        """Images for the next run when `images_left` are still to submit."""
        share = math.ceil(images_left / max(self.runs_in_flight, 1))
        return max(1, min(self.target(), share))


def take_run(planned: deque[ShardRef], size: int, index: int) -> tuple[ShardRef, int]:
    """Pop planned shards from the front of `planned` until the run holds `size` images (at
    least one shard); returns the run as shard `index` and how many planned shards it holds."""
    ids: list[int] = []
    parts = 0
    while planned and (parts == 0 or len(ids) + len(planned[0].image_ids) <= size):
        ids.extend(planned.popleft().image_ids)
        parts += 1
    return ShardRef(index=index, image_ids=ids), parts


def remaining_images(
    shard: ShardRef, job: LabelJob, ctx: RunContext, resources: Resources
) -> ShardRef | None:
    """The images of `shard` not yet stored under the run's work key (a dead attempt's rest),
    or None when it stored them all."""
    with session_scope(resources.engine) as session:
        ids = repository.pending_among(
            session,
            image_ids=shard.image_ids,
            work_key=ctx.work_key,
            retry_failed=job.retry_failed,
        )
    return ShardRef(index=shard.index, image_ids=ids) if ids else None


def process_age_seconds() -> float:
    """Seconds since this process started (Linux: from /proc), 0.0 where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    return max(uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK"), 0.0)


class _Progress:
    """Images stored so far by this attempt (the writer thread adds, the heartbeat reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done = 0
        self.failed = 0

    def written(self, images_done: int, images_failed: int) -> None:
        with self._lock:
            self.done += images_done
            self.failed += images_failed

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.done, self.failed


def _touch(progress: _Progress, shard_id: int, session: Session) -> bool:
    done, failed = progress.snapshot()
    return label_shards.touch_shard(
        session, shard_id=shard_id, images_done=done, images_failed=failed
    )


class ShardAttempt:
    """One attempt at a shard, recorded as a `label_shards` row for the block it wraps.

    Entering claims the row (refused when the run has ended or this attempt already ran) and
    starts its heartbeat, which also carries the progress `written` is told of; `completed`
    records the result; leaving by an exception records the attempt `failed` with the error. A
    heartbeat found lost (the job's process declared the attempt crashed) fails the attempt at
    exit with `ShardLeaseLostError`.
    """

    def __init__(
        self,
        engine: Engine,
        shard: ShardRef,
        ctx: RunContext,
        *,
        attempt: int,
        flow_run_id: str,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.engine, self.shard, self.ctx = engine, shard, ctx
        self.heartbeat_seconds = heartbeat_seconds
        self.attempt, self.flow_run_id = attempt, flow_run_id
        self.what = f"shard {shard.index} attempt {attempt} of run {ctx.run_id}"
        self.progress = _Progress()
        self.shard_id = 0
        self._heartbeat: Heartbeat | None = None

    def written(self, images_done: int, images_failed: int) -> None:
        """Progress callback for `run_shard` (from its writer thread)."""
        self.progress.written(images_done, images_failed)

    def __enter__(self) -> "ShardAttempt":
        owner = this_process()
        with session_scope(self.engine) as session:
            run = queries.get_label_run(session, run_id=self.ctx.run_id)
        if run.status != RunStatus.RUNNING:
            raise ShardAttemptError(
                f"label run {self.ctx.run_id} is {run.status}: {self.what} not run"
            )
        try:
            with session_scope(self.engine) as session:
                self.shard_id = label_shards.start_shard(
                    session,
                    run_id=self.ctx.run_id,
                    shard_index=self.shard.index,
                    attempt=self.attempt,
                    flow_run_id=self.flow_run_id,
                    owner=owner.label,
                    owner_key=owner.key,
                )
        except IntegrityError as exc:
            raise ShardAttemptError(f"{self.what} already ran") from exc
        touch = functools.partial(_touch, self.progress, self.shard_id)
        self._heartbeat = Heartbeat(
            self.engine, touch, what=self.what, interval_seconds=self.heartbeat_seconds
        ).__enter__()
        return self

    def on_device(self, device: str) -> None:
        """Record the device the attempt holds."""
        with session_scope(self.engine) as session:
            label_shards.set_shard_device(session, shard_id=self.shard_id, device=device)

    def completed(self, result: ShardResult) -> None:
        """Record the attempt completed with `result`."""
        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
            if self._heartbeat.lost:
                raise ShardLeaseLostError(f"{self.what} was declared crashed by the job's process")
        with session_scope(self.engine) as session:
            label_shards.finish_shard(
                session,
                shard_id=self.shard_id,
                status=ShardStatus.COMPLETED,
                result=result.model_dump(mode="json"),
                images_done=result.images_done,
                images_failed=result.images_failed,
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
        if exc is None:
            return
        done, failed = self.progress.snapshot()
        with session_scope(self.engine) as session:
            label_shards.finish_shard(
                session,
                shard_id=self.shard_id,
                status=ShardStatus.FAILED,
                images_done=done,
                images_failed=failed,
                reason=f"{type(exc).__name__}: {exc}",
            )


def label_attempt(
    shard: ShardRef,
    job: LabelJob,
    ctx: RunContext,
    *,
    resources: Resources,
    attempt: ShardAttempt,
    process_start: float,
) -> ShardResult:
    """Label `shard` in this process for `attempt`. The models are loaded (or found loaded)
    first, so that `seconds["startup"]` is the process start (`process_start` seconds before
    the flow began) plus everything until the first image: waiting for a device, weights and
    runtime engines; `seconds["shard_wall"]` is the whole attempt from process start."""
    began = time.perf_counter() - process_start
    source = box_source_for(job, resources)
    chosen_runtimes(job, resources)
    startup = time.perf_counter() - began
    result = run_shard(
        shard, job, ctx, resources=resources, box_source=source, on_written=attempt.written
    )
    seconds = {
        **result.seconds,
        "startup": round(startup, 3),
        "shard_wall": round(time.perf_counter() - began, 3),
    }
    return result.model_copy(update={"seconds": seconds})
