"""The job's side of shards on a work pool: submit the shard deployment's flow runs with a
bounded number in flight, follow them, rerun the dead ones, and gather their results.

Each shard run records its attempt in the database (`label_shards`: progress, heartbeat,
result); Prefect says whether its flow run ended. An attempt is rerun, for the images it had not
stored, when its flow run failed or crashed, or when its process is gone or its heartbeat lapsed
while Prefect still shows it running (a killed worker host cannot report its own end: that
flow run is then set `Crashed` here, with the reason). A shard that fails
`labeling.shard_run_attempts` times fails the job, after the other shards finish.
"""

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID, uuid4

from prefect import get_client, get_run_logger
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, State, StateType, WorkerStatus
from prefect.deployments import run_deployment
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.states import Cancelled, Cancelling, Crashed

from autolabel.flows.errors import FlowError
from autolabel.storage.db import label_runs, label_shards
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.label_shards import ShardAttemptRow
from autolabel.storage.db.tables import RunStatus, ShardStatus
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.progress import ShardTally
from autolabel.tasks.labeling.run_lease import LEASE_SECONDS, Heartbeat, death_reason
from autolabel.tasks.labeling.shard_runs import ShardRunSizer, remaining_images, take_run
from autolabel.tasks.resources import Resources


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow run's logger (what the Prefect UI shows), or this module's outside a flow."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


POLL_SECONDS = 2.0
WAITING_NOTICE_SECONDS = 120.0
_ENDED = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


class ShardRunsFailedError(FlowError):
    """Shards that failed every attempt; the job's other shards finished."""


def find_shard_deployment(name: str | None) -> UUID | None:
    """The id of the shard deployment `name` on the Prefect server when its work pool has a
    worker online; None when unset, absent or without a worker (the job then labels in its own
    process, and says why in its log)."""
    if name is None:
        return None
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            _logger().warning(
                "no deployment %s on the Prefect server: labeling every shard in this process "
                "(register it from deploy/prefect.yaml to spread shards over a work pool)",
                name,
            )
            return None
        pool = deployment.work_pool_name
        workers = client.read_workers_for_work_pool(pool) if pool else []
    if not any(worker.status == WorkerStatus.ONLINE for worker in workers):
        _logger().warning(
            "no worker is online on %s, the work pool of %s: labeling every shard in this "
            "process (start one: `prefect worker start --pool %s`)",
            pool,
            name,
            pool,
        )
        return None
    return deployment.id


@dataclass
class _Submitted:
    shard: ShardRef
    attempt: int
    parts: int  # planned shards it holds (for the progress artifact)
    flow_run_id: UUID
    since: float
    state: StateType | None = None
    noticed_waiting: bool = False


def _verdict(state: StateType | None, row: ShardAttemptRow | None, now: Any) -> str | None:
    """Why an attempt is over but for a completion (None while it runs or once it completed)."""
    if state is not None and state in _ENDED - {StateType.COMPLETED}:
        return f"its flow run ended {state.value.lower()}"
    if row is not None and row.status is ShardStatus.RUNNING and state not in _ENDED:
        return death_reason(row.lease, now=now, lease_seconds=LEASE_SECONDS)
    return None


class ShardFanOut:
    """Runs one label run's shards as flow runs of the shard deployment (see module docstring)."""

    def __init__(
        self,
        deployment_id: UUID,
        job: LabelJob,
        ctx: RunContext,
        *,
        resources: Resources,
        sizer: ShardRunSizer,
        attempts: int,
        tally: ShardTally,
        heartbeat: Heartbeat,
        on_progress: Callable[[int, int], None],
        on_shard_done: Callable[[], None],
    ) -> None:
        self.deployment_id, self.job, self.ctx = deployment_id, job, ctx
        self.resources, self.sizer, self.attempts = resources, sizer, attempts
        self.tally, self.heartbeat = tally, heartbeat
        self.on_progress, self.on_shard_done = on_progress, on_shard_done
        self._planned: deque[ShardRef] = deque()
        self._planned_images = 0
        self._reruns: deque[tuple[ShardRef, int, int]] = deque()
        self._runs = 0
        self._token = uuid4().hex
        self._active: dict[UUID, _Submitted] = {}
        self._failed: list[str] = []
        self._reported = (0, 0)
        self.log = _logger()

    def run(self, shards: list[ShardRef]) -> RunStatus:
        """Label the planned `shards`, as shard runs of the sizes `sizer` chooses; returns
        `completed`, or `aborted` when too many images failed."""
        self._planned.extend(shards)
        self._planned_images = sum(len(shard.image_ids) for shard in shards)
        try:
            while self._planned or self._reruns or self._active:
                self._submit_up_to_limit()
                time.sleep(POLL_SECONDS)
                self._follow()
                if self.tally.too_many_failures():
                    self._cancel_all("the run aborted: too many images failed")
                    return RunStatus.ABORTED
                if self.heartbeat.lost:
                    self._cancel_all("the run was declared crashed")
                    return RunStatus.CRASHED
        except BaseException:
            self._cancel_all("the job stopped")
            raise
        if self._failed:
            raise ShardRunsFailedError(
                f"{len(self._failed)} shard(s) failed every attempt: {'; '.join(self._failed)} "
                "(their images stay pending: rerun the job to label them)"
            )
        return RunStatus.COMPLETED

    def _next(self) -> tuple[ShardRef, int, int]:
        """(shard run, attempt, planned shards it holds): a rerun first, else a new run."""
        if self._reruns:
            return self._reruns.popleft()
        size = self.sizer.size(self._planned_images)
        shard, parts = take_run(self._planned, size, self._runs)
        self._runs += 1
        self._planned_images -= len(shard.image_ids)
        return shard, 1, parts

    def _submit_up_to_limit(self) -> None:
        while (self._planned or self._reruns) and len(self._active) < self.sizer.runs_in_flight:
            shard, attempt, parts = self._next()
            name = f"run-{self.ctx.run_id}-shard-{shard.index}-attempt-{attempt}"
            flow_run = cast(
                FlowRun,
                run_deployment(
                    self.deployment_id,
                    parameters={
                        "shard": shard.model_dump(mode="json"),
                        "job": self.job.model_dump(mode="json"),
                        "ctx": self.ctx.model_dump(mode="json"),
                        "attempt": attempt,
                    },
                    flow_run_name=name,
                    timeout=0,
                    tags=[f"autolabel-run-{self.ctx.run_id}"],
                    # Unique to this job's process: the same run id recurs across databases.
                    idempotency_key=f"autolabel-{self._token}-{name}",
                ),
            )
            self._active[flow_run.id] = _Submitted(
                shard, attempt, parts, flow_run.id, time.monotonic()
            )

    def _follow(self) -> None:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(self._active)))
            )
        states = {run.id: run.state.type if run.state else None for run in runs}
        with session_scope(self.resources.engine) as session:
            rows = label_shards.shard_attempts(session, run_id=self.ctx.run_id)
            now = label_runs.database_now(session)
        by_key = {(row.shard_index, row.attempt): row for row in rows}
        self._report_progress(rows)
        for flow_run_id, item in list(self._active.items()):
            state = item.state = states.get(flow_run_id)
            row = by_key.get((item.shard.index, item.attempt))
            if state is StateType.COMPLETED and row is not None and row.result:
                del self._active[flow_run_id]
                result = ShardResult.model_validate(row.result)
                self.tally.add(result)
                self.sizer.observe(result)
                self._shard_done(item)
                continue
            reason = _verdict(state, row, now)
            if reason is None and state is StateType.COMPLETED:
                reason = "its flow run completed without recording a result"
            if reason is not None:
                del self._active[flow_run_id]
                self._end_attempt(item, row, state, reason)
            elif row is None:
                self._notice_waiting(item)

    def _end_attempt(
        self, item: _Submitted, row: ShardAttemptRow | None, state: StateType | None, reason: str
    ) -> None:
        what = f"shard {item.shard.index} attempt {item.attempt}"
        if row is not None and row.status is ShardStatus.RUNNING:
            with session_scope(self.resources.engine) as session:
                label_shards.mark_shard_crashed(session, shard_id=row.id, reason=reason)
        if state not in _ENDED:
            self._set_state(item.flow_run_id, Crashed(message=f"autolabel: {what}: {reason}"))
        detail = (row.reason if row is not None else None) or reason
        rest = remaining_images(item.shard, self.job, self.ctx, self.resources)
        if rest is None:
            self.log.warning("%s ended (%s) after storing all its images", what, detail)
            if row is not None:
                self.tally.add(
                    ShardResult(
                        index=item.shard.index,
                        images_done=row.images_done,
                        images_failed=row.images_failed,
                    )
                )
            self._shard_done(item)
        elif item.attempt < self.attempts:
            self.log.warning(
                "%s ended (%s): rerunning its %d images not yet stored",
                what,
                detail,
                len(rest.image_ids),
            )
            self._reruns.append((rest, item.attempt + 1, item.parts))
        else:
            self._failed.append(f"shard {item.shard.index}: {detail}")
            self._shard_done(item)

    def _shard_done(self, item: _Submitted) -> None:
        for _ in range(item.parts):
            self.on_shard_done()

    def _notice_waiting(self, item: _Submitted) -> None:
        waited = time.monotonic() - item.since
        if waited > WAITING_NOTICE_SECONDS and not item.noticed_waiting:
            item.noticed_waiting = True
            self.log.warning(
                "shard %d has waited %.0f s for a worker: is a worker polling the shard "
                "deployment's work pool (`prefect worker start --pool ...`)?",
                item.shard.index,
                waited,
            )

    def _report_progress(self, rows: list[ShardAttemptRow]) -> None:
        done = sum(row.images_done for row in rows)
        failed = sum(row.images_failed for row in rows)
        last_done, last_failed = self._reported
        if (done, failed) != self._reported:
            self.on_progress(max(done - last_done, 0), max(failed - last_failed, 0))
            self._reported = (done, failed)

    def _set_state(self, flow_run_id: UUID, state: Any) -> None:
        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(flow_run_id, state=state, force=True)
        except Exception as exc:  # noqa: BLE001 - best effort: the database holds the verdict
            self.log.warning("could not set the state of flow run %s: %s", flow_run_id, exc)

    def _cancel_all(self, why: str) -> None:
        """Cancel the shard runs still in flight (best effort) and forget the queue."""
        self._planned.clear()
        self._reruns.clear()
        for item in self._active.values():
            message = f"autolabel: {why}"
            started = item.state in (StateType.RUNNING, StateType.CANCELLING)
            state: State[Any] = (
                Cancelling(message=message) if started else Cancelled(message=message)
            )
            self._set_state(item.flow_run_id, state)
        self._active.clear()
