"""Label run rows: create, heartbeat, counts, final status; the running run of a dataset.

Like the repository functions, these are keyword-only, take the caller's `Session` and never
commit. A dataset has at most one `running` run (a partial unique index): `create_label_run`
with `RunStatus.RUNNING` raises SQLAlchemy's `IntegrityError` while another is running, which is
how two jobs started at once are told apart (`autolabel.tasks.labeling.run_lease`).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from autolabel.storage.db.base import utc_now
from autolabel.storage.db.tables import ImageResult, LabelRun, ResultStatus, RunStatus

REASON_CHARS = 1000
"""Longest `status_reason` stored (a one-line message; longer ones are cut with an ellipsis)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningRun:
    """A run in state `running`, as another process sees it.

    Attributes:
        id: Run id.
        dataset_id: Its dataset.
        started_at: When it started (UTC).
        heartbeat_at: Its owner's last heartbeat (UTC), None before the first.
        owner: Who runs it, for people: "<host> pid <pid>".
        owner_key: Identity of the owner process, for liveness checks (may be empty).
    """

    id: int
    dataset_id: int
    started_at: datetime
    heartbeat_at: datetime | None
    owner: str
    owner_key: str

    @property
    def last_sign_of_life(self) -> datetime:
        """The last heartbeat, or the start when there was none."""
        return self.heartbeat_at or self.started_at


def one_line(reason: str) -> str:
    """`reason` on one line, at most `REASON_CHARS` characters."""
    flat = " ".join(reason.split())
    return flat if len(flat) <= REASON_CHARS else flat[: REASON_CHARS - 1] + "…"


def database_now(session: Session) -> datetime:
    """The database server's clock (PostgreSQL), or this machine's for the embedded SQLite.

    Heartbeats are written and compared with it, so that hosts with skewed clocks agree.
    """
    if session.get_bind().dialect.name == "postgresql":
        now: datetime = session.execute(select(func.now())).scalar_one()
        return now
    return utc_now()


def create_label_run(
    session: Session,
    *,
    dataset_id: int,
    work_key: str,
    parameters: Mapping[str, Any],
    detector_model: str | None = None,
    segmenter_model: str | None = None,
    model_version_id: int | None = None,
    flow_run_id: str | None = None,
    owner: str | None = None,
    owner_key: str | None = None,
    status: RunStatus = RunStatus.RUNNING,
    status_reason: str | None = None,
) -> int:
    """Insert a label run (by default `running`, with a first heartbeat) and return its id.

    Raises:
        sqlalchemy.exc.IntegrityError: `status` is running and the dataset already has a
            running run (at flush; the caller's transaction must be rolled back).
    """
    now = database_now(session)
    run = LabelRun(
        dataset_id=dataset_id,
        work_key=work_key,
        parameters=dict(parameters),
        detector_model=detector_model,
        segmenter_model=segmenter_model,
        model_version_id=model_version_id,
        flow_run_id=flow_run_id,
        status=status,
        status_reason=None if status_reason is None else one_line(status_reason),
        images_done=0,
        images_failed=0,
        images_skipped=0,
        annotations=0,
        timings={},
        started_at=now,
        heartbeat_at=now if status is RunStatus.RUNNING else None,
        finished_at=None if status is RunStatus.RUNNING else now,
        owner=owner,
        owner_key=owner_key,
    )
    session.add(run)
    session.flush()
    return run.id


def set_run_versions(
    session: Session,
    *,
    run_id: int,
    work_key: str,
    detector_model: str | None,
    segmenter_model: str | None,
    model_version_id: int | None,
) -> None:
    """Record the work key and model versions a run resolved after it started."""
    session.execute(
        update(LabelRun)
        .where(LabelRun.id == run_id)
        .values(
            work_key=work_key,
            detector_model=detector_model,
            segmenter_model=segmenter_model,
            model_version_id=model_version_id,
        )
    )


def touch_run(session: Session, *, run_id: int) -> bool:
    """Renew a running run's heartbeat; False when the run is no longer `running` (another
    process declared it crashed, so its owner must stop)."""
    result = session.execute(
        update(LabelRun)
        .where(LabelRun.id == run_id, LabelRun.status == RunStatus.RUNNING)
        .values(heartbeat_at=database_now(session))
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def _running(row: LabelRun) -> RunningRun:
    return RunningRun(
        id=row.id,
        dataset_id=row.dataset_id,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        owner=row.owner or "an unknown process",
        owner_key=row.owner_key or "",
    )


def running_runs(session: Session, *, dataset_id: int | None = None) -> list[RunningRun]:
    """The runs in state `running` (of one dataset, when given), oldest first."""
    stmt = select(LabelRun).where(LabelRun.status == RunStatus.RUNNING)
    if dataset_id is not None:
        stmt = stmt.where(LabelRun.dataset_id == dataset_id)
    return [_running(row) for row in session.execute(stmt.order_by(LabelRun.id)).scalars()]


def refresh_run_counts(session: Session, *, run_id: int, images_skipped: int | None = None) -> None:
    """Recompute a run's done/failed/annotation counters from its `image_results` rows.

    Recounting (rather than incrementing) keeps the counters right when a batch is retried after
    its first attempt committed.

    Args:
        session: Caller's session.
        run_id: The run.
        images_skipped: Images the run skipped as already done, when known.
    """

    def count(status: ResultStatus) -> Any:
        return (
            select(func.count())
            .where(ImageResult.run_id == run_id, ImageResult.status == status)
            .scalar_subquery()
        )

    total = (
        select(func.coalesce(func.sum(ImageResult.n_annotations), 0))
        .where(ImageResult.run_id == run_id, ImageResult.status == ResultStatus.DONE)
        .scalar_subquery()
    )
    values: dict[str, Any] = {
        "images_done": count(ResultStatus.DONE),
        "images_failed": count(ResultStatus.FAILED),
        "annotations": total,
    }
    if images_skipped is not None:
        values["images_skipped"] = images_skipped
    session.execute(update(LabelRun).where(LabelRun.id == run_id).values(**values))


def finish_label_run(
    session: Session,
    *,
    run_id: int,
    status: RunStatus,
    reason: str | None = None,
    timings: Mapping[str, float] | None = None,
) -> bool:
    """Set a run's final status (with a one-line reason), finish time and timings.

    Only a `running` run changes, or a `crashed` one: its owner's own final word replaces the
    verdict another process reached from a lapsed heartbeat. Returns whether the row changed.
    """
    if not status.is_final:
        raise ValueError(f"expected a final status, got {status.value!r}")
    values: dict[str, Any] = {
        "status": status,
        "finished_at": database_now(session),
        "status_reason": None if reason is None else one_line(reason),
    }
    if timings is not None:
        values["timings"] = dict(timings)
    result = session.execute(
        update(LabelRun)
        .where(
            LabelRun.id == run_id,
            LabelRun.status.in_([RunStatus.RUNNING, RunStatus.CRASHED]),
        )
        .values(**values)
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def mark_crashed(session: Session, *, run_id: int, reason: str) -> bool:
    """Declare a `running` run crashed (its process is gone); False when it already ended."""
    result = session.execute(
        update(LabelRun)
        .where(LabelRun.id == run_id, LabelRun.status == RunStatus.RUNNING)
        .values(
            status=RunStatus.CRASHED,
            status_reason=one_line(reason),
            finished_at=database_now(session),
        )
    )
    return int(result.rowcount) == 1  # type: ignore[attr-defined]


def record_runtimes(
    session: Session, *, run_id: int, runtimes: Mapping[str, Mapping[str, str]]
) -> None:
    """Add each model's runtime choice to the run's `runtimes` (model -> the distinct choices of
    its workers: runtime, request, device and reason), once per distinct choice."""
    row = session.execute(
        select(LabelRun.runtimes).where(LabelRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    recorded: dict[str, list[dict[str, str]]] = {
        model: list(choices) for model, choices in (row or {}).items()
    }
    changed = False
    for model, choice in runtimes.items():
        entries = recorded.setdefault(model, [])
        if dict(choice) not in entries:
            entries.append(dict(choice))
            changed = True
    if changed:
        session.execute(update(LabelRun).where(LabelRun.id == run_id).values(runtimes=recorded))
