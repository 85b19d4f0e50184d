"""Label shard rows: the attempts at a run's shards that run as flow runs on a work pool.

Keyword-only functions on the caller's `Session` that never commit, like `label_runs`. An
attempt's process calls `start_shard`, `touch_shard` (heartbeat and progress) and `finish_shard`;
the job's process reads them with `shard_attempts` and declares dead ones `mark_shard_crashed`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from autolabel.storage.db.label_runs import RunningRun, database_now, one_line
from autolabel.storage.db.tables import LabelShard, ShardStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardAttemptRow:
    """One attempt at a shard, as the job's process sees it.

    Attributes:
        id: Row id.
        shard_index: The shard.
        attempt: 1 for the first run of the shard, then 2, 3...
        status: Where it stands.
        flow_run_id: The Prefect flow run that runs it.
        device: The device it holds (e.g. `cuda:1`).
        images_done: Images it stored as done so far.
        images_failed: Images it stored as failed so far.
        result: Its `ShardResult` (as JSON) once completed, else empty.
        reason: Why it failed or crashed.
        lease: Its owner and last sign of life, for liveness checks.
    """

    id: int
    shard_index: int
    attempt: int
    status: ShardStatus
    flow_run_id: str
    device: str
    images_done: int
    images_failed: int
    result: dict[str, Any]
    reason: str | None
    lease: RunningRun


def start_shard(
    session: Session,
    *,
    run_id: int,
    shard_index: int,
    attempt: int,
    flow_run_id: str,
    owner: str,
    owner_key: str,
) -> int:
    """Insert a `running` attempt (with a first heartbeat) and return its id.

    Raises:
        sqlalchemy.exc.IntegrityError: This attempt of the shard was started before (at flush).
    """
    now = database_now(session)
    row = LabelShard(
        run_id=run_id,
        shard_index=shard_index,
        attempt=attempt,
        status=ShardStatus.RUNNING,
        flow_run_id=flow_run_id,
        owner=owner,
        owner_key=owner_key,
        images_done=0,
        images_failed=0,
        result={},
        started_at=now,
        heartbeat_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def set_shard_device(session: Session, *, shard_id: int, device: str) -> None:
    """Record the device an attempt holds (once it has one)."""
    session.execute(update(LabelShard).where(LabelShard.id == shard_id).values(device=device))


def touch_shard(session: Session, *, shard_id: int, images_done: int, images_failed: int) -> bool:
    """Renew a running attempt's heartbeat and progress; False when it is no longer `running`
    (the job's process declared it crashed: its owner must stop)."""
    result = session.execute(
        update(LabelShard)
        .where(LabelShard.id == shard_id, LabelShard.status == ShardStatus.RUNNING)
        .values(
            heartbeat_at=database_now(session),
            images_done=images_done,
            images_failed=images_failed,
        )
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def finish_shard(
    session: Session,
    *,
    shard_id: int,
    status: ShardStatus,
    result: Mapping[str, Any] | None = None,
    images_done: int = 0,
    images_failed: int = 0,
    reason: str | None = None,
) -> bool:
    """Give an attempt its final status (`completed` with its result, or `failed`); a `crashed`
    verdict of the job's process is replaced by the owner's own final word. Returns whether the
    row changed."""
    if status is ShardStatus.RUNNING:
        raise ValueError("expected a final status, got 'running'")
    changed = session.execute(
        update(LabelShard)
        .where(
            LabelShard.id == shard_id,
            LabelShard.status.in_([ShardStatus.RUNNING, ShardStatus.CRASHED]),
        )
        .values(
            status=status,
            result=dict(result or {}),
            images_done=images_done,
            images_failed=images_failed,
            status_reason=None if reason is None else one_line(reason),
            finished_at=database_now(session),
        )
    )
    return int(changed.rowcount) == 1  # type: ignore[attr-defined]


def mark_shard_crashed(session: Session, *, shard_id: int, reason: str) -> bool:
    """Declare a `running` attempt crashed; False when it had already ended."""
    changed = session.execute(
        update(LabelShard)
        .where(LabelShard.id == shard_id, LabelShard.status == ShardStatus.RUNNING)
        .values(
            status=ShardStatus.CRASHED,
            status_reason=one_line(reason),
            finished_at=database_now(session),
        )
    )
    return int(changed.rowcount) == 1  # type: ignore[attr-defined]


def _attempt(row: LabelShard, run_id: int) -> ShardAttemptRow:
    started: datetime = row.started_at
    return ShardAttemptRow(
        id=row.id,
        shard_index=row.shard_index,
        attempt=row.attempt,
        status=row.status,
        flow_run_id=row.flow_run_id or "",
        device=row.device or "",
        images_done=row.images_done,
        images_failed=row.images_failed,
        result=dict(row.result or {}),
        reason=row.status_reason,
        lease=RunningRun(
            id=run_id,
            dataset_id=0,
            started_at=started,
            heartbeat_at=row.heartbeat_at,
            owner=row.owner or "an unknown process",
            owner_key=row.owner_key or "",
        ),
    )


def shard_attempts(session: Session, *, run_id: int) -> list[ShardAttemptRow]:
    """Every attempt at the shards of `run_id`, by shard and attempt."""
    rows = session.execute(
        select(LabelShard)
        .where(LabelShard.run_id == run_id)
        .order_by(LabelShard.shard_index, LabelShard.attempt)
    ).scalars()
    return [_attempt(row, run_id) for row in rows]
