"""Who runs a label run, how it stays alive, and how a dead one is found (no Prefect here).

A run is claimed by inserting it `running` with its owner process; the database allows one
running run per dataset, so a second job on the same dataset is refused (and recorded as a
failed run saying which run holds the dataset) instead of labeling the same images beside it.

While it works, the owner renews a heartbeat every `HEARTBEAT_SECONDS` (`Heartbeat`). A running
run is declared `crashed`, with the reason, when either
- its owner process is gone: decidable on the same machine and process namespace (same boot id
  and PID namespace, so never confused by containers), by the process's start time; or
- its heartbeat is older than the lease (`LEASE_SECONDS`): any other host, or a hung owner.
That check runs when the next job on the dataset starts, and when runs are listed.
"""

import functools
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from autolabel.storage.db import label_runs
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.label_runs import RunningRun
from autolabel.storage.db.tables import RunStatus
from autolabel.storage.errors import DatasetBusyError, StorageError

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 60.0
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class RunOwner:
    """A process that runs label runs.

    Attributes:
        label: For people: "<host> pid <pid>".
        key: "<boot id>/<pid namespace>/<pid>/<start time>" on Linux (empty elsewhere): enough to
            tell, from the same machine and namespace, whether that very process still runs.
    """

    label: str
    key: str


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _namespace() -> str | None:
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        pid_ns = Path("/proc/self/ns/pid").stat().st_ino
    except OSError:
        return None
    return None if boot is None else f"{boot}/{pid_ns}"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None when there is no such pid."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def this_process() -> RunOwner:
    """The calling process as a run owner."""
    pid = os.getpid()
    namespace, started = _namespace(), _start_time(pid)
    key = "" if namespace is None or started is None else f"{namespace}/{pid}/{started}"
    return RunOwner(label=f"{socket.gethostname()} pid {pid}", key=key)


def owner_alive(owner_key: str) -> bool | None:
    """Whether the process `owner_key` names still runs: True/False when this process shares its
    machine boot and PID namespace, None when that cannot be told from here."""
    namespace = _namespace()
    if not owner_key or namespace is None or not owner_key.startswith(namespace + "/"):
        return None
    pid, started = owner_key.removeprefix(namespace + "/").split("/")
    return _start_time(int(pid)) == started


def death_reason(run: RunningRun, *, now: Any, lease_seconds: float) -> str | None:
    """Why `run` is dead (its process is gone, or its heartbeat lapsed), None when it lives."""
    last = run.last_sign_of_life
    if owner_alive(run.owner_key) is False:
        return f"its process ({run.owner}) is gone; last heartbeat {last:%Y-%m-%d %H:%M:%S} UTC"
    if now - last > timedelta(seconds=lease_seconds):
        return (
            f"no heartbeat from {run.owner} since {last:%Y-%m-%d %H:%M:%S} UTC "
            f"(lease {lease_seconds:g} s): its process died or hung"
        )
    return None


def close_dead_runs(
    engine: Engine, *, dataset_id: int | None = None, lease_seconds: float = LEASE_SECONDS
) -> list[int]:
    """Mark every dead `running` run (of one dataset, when given) `crashed`; returns their ids."""
    closed = []
    with session_scope(engine) as session:
        now = label_runs.database_now(session)
        for run in label_runs.running_runs(session, dataset_id=dataset_id):
            reason = death_reason(run, now=now, lease_seconds=lease_seconds)
            if reason is None:
                continue
            if label_runs.mark_crashed(session, run_id=run.id, reason=reason):
                label_runs.refresh_run_counts(session, run_id=run.id)  # the work it did
                logger.warning("label run %d crashed: %s", run.id, reason)
                closed.append(run.id)
    return closed


def _busy_reason(holder: RunningRun) -> str:
    return (
        f"dataset is being labeled by run {holder.id} ({holder.owner}, started "
        f"{holder.started_at:%Y-%m-%d %H:%M:%S} UTC); one job runs per dataset at a time: "
        "wait for it to finish, then rerun (images it labeled are skipped)"
    )


def claim_dataset(
    engine: Engine,
    *,
    dataset_id: int,
    parameters: dict[str, Any],
    flow_run_id: str,
    owner: RunOwner,
    lease_seconds: float = LEASE_SECONDS,
) -> int:
    """Insert this job's `running` run on `dataset_id` and return its id.

    Dead runs of the dataset are marked crashed first. If a live run holds the dataset, this
    job's run is recorded `failed` with the reason, and `DatasetBusyError` says which run holds
    it (the job labels nothing).
    """
    insert = functools.partial(
        label_runs.create_label_run,
        dataset_id=dataset_id,
        work_key="",
        parameters=parameters,
        flow_run_id=flow_run_id,
        owner=owner.label,
        owner_key=owner.key,
    )
    holder: RunningRun | None = None
    for _ in range(_CLAIM_ATTEMPTS):
        close_dead_runs(engine, dataset_id=dataset_id, lease_seconds=lease_seconds)
        try:
            with session_scope(engine) as session:
                return insert(session)
        except IntegrityError:
            with session_scope(engine) as session:
                running = label_runs.running_runs(session, dataset_id=dataset_id)
            holder = running[0] if running else None
        if holder is not None and not _holder_may_be_dead(engine, holder, lease_seconds):
            break
    reason = _busy_reason(holder) if holder else "dataset claimed by another job at the same time"
    with session_scope(engine) as session:
        refused = insert(session, status=RunStatus.FAILED, status_reason=f"refused: {reason}")
    raise DatasetBusyError(f"run {refused} refused: {reason}")


def _holder_may_be_dead(engine: Engine, holder: RunningRun, lease_seconds: float) -> bool:
    with session_scope(engine) as session:
        now = label_runs.database_now(session)
    return death_reason(holder, now=now, lease_seconds=lease_seconds) is not None


class Heartbeat:
    """Renews a lease (a label run's, or a shard attempt's) from a daemon thread until the
    context exits.

    `touch(session)` renews it and returns whether it is still held. `lost` becomes True when
    it is not (another process declared the holder crashed after its heartbeat lapsed): the
    holder must stop labeling. A failed renewal (the database briefly unreachable) is logged and
    tried again at the next beat.
    """

    def __init__(
        self,
        engine: Engine,
        touch: Callable[[Session], bool],
        *,
        what: str,
        interval_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.engine, self.touch, self.what, self.interval = engine, touch, what, interval_seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{what.replace(' ', '-')}", daemon=True
        )

    @classmethod
    def of_run(
        cls, engine: Engine, run_id: int, *, interval_seconds: float = HEARTBEAT_SECONDS
    ) -> "Heartbeat":
        """The heartbeat of label run `run_id`."""
        touch = functools.partial(label_runs.touch_run, run_id=run_id)
        return cls(engine, touch, what=f"label run {run_id}", interval_seconds=interval_seconds)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with session_scope(self.engine) as session:
                    alive = self.touch(session)
            except (StorageError, SQLAlchemyError) as exc:
                logger.warning("heartbeat of %s failed: %s", self.what, exc)
                continue
            if not alive:
                self.lost = True
                logger.error("%s is no longer running: stopping", self.what)
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
