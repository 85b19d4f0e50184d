"""Run claims, heartbeats and crash detection on SQLite and on the PostgreSQL server.

Before this existed, a second job on a dataset labeled the same images beside the first (with
wrong counts), and a run whose process died stayed `running` forever.
"""

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update

from autolabel.storage.db import label_runs, repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.tables import LabelRun, RunStatus
from autolabel.storage.errors import DatasetBusyError
from autolabel.tasks.labeling import run_lease
from autolabel.tasks.labeling.run_lease import (
    Heartbeat,
    RunOwner,
    claim_dataset,
    close_dead_runs,
    owner_alive,
    this_process,
)


def dataset(engine: Engine, name: str = "d") -> int:
    with session_scope(engine) as session:
        return repository.get_or_create_dataset(session, name=name)


def claim(engine: Engine, dataset_id: int, owner: RunOwner | None = None, **kw: float) -> int:
    return claim_dataset(
        engine,
        dataset_id=dataset_id,
        parameters={"job": 1},
        flow_run_id="",
        owner=owner or this_process(),
        **kw,  # type: ignore[arg-type]
    )


def runs(engine: Engine) -> list[tuple[int, str, str | None]]:
    with session_scope(engine) as session:
        rows = session.query(LabelRun.id, LabelRun.status, LabelRun.status_reason)
        return [(i, str(s.value), r) for i, s, r in rows.order_by(LabelRun.id)]


def dead_owner() -> RunOwner:
    """The identity of a process that has exited (it prints its own key, then ends)."""
    code = "from autolabel.tasks.labeling.run_lease import this_process; print(this_process().key)"
    key = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert owner_alive(key) is False
    return RunOwner(label="gone-host pid 1", key=key)


def test_this_process_is_alive_and_a_foreign_key_is_undecidable() -> None:
    me = this_process()
    assert owner_alive(me.key) is True
    assert owner_alive("another-boot/123/45/678") is None
    assert owner_alive("") is None


def test_a_second_job_on_a_live_dataset_is_refused_and_recorded(engine: Engine) -> None:
    dataset_id = dataset(engine)
    first = claim(engine, dataset_id)
    with pytest.raises(DatasetBusyError, match=f"run {first}") as refused:
        claim(engine, dataset_id)
    assert "one job runs per dataset" in str(refused.value)
    rows = runs(engine)
    assert [s for _, s, _ in rows] == ["running", "failed"]  # ids: PostgreSQL skips failed ones
    assert rows[0][0] == first
    assert str(rows[1][2]).startswith(f"refused: dataset is being labeled by run {first}")
    other = claim(engine, dataset(engine, "other"))  # other datasets are free
    assert other > first


def test_a_run_whose_process_is_gone_is_crashed_by_the_next_claim(engine: Engine) -> None:
    dataset_id = dataset(engine)
    stale = claim(engine, dataset_id, owner=dead_owner())
    fresh = claim(engine, dataset_id)
    rows = {i: (s, r) for i, s, r in runs(engine)}
    assert rows[stale][0] == "crashed"
    assert "its process (gone-host pid 1) is gone" in str(rows[stale][1])
    assert rows[fresh] == ("running", None)


def _age_heartbeat(engine: Engine, run_id: int, seconds: float) -> None:
    with session_scope(engine) as session:
        now = label_runs.database_now(session)
        session.execute(
            update(LabelRun)
            .where(LabelRun.id == run_id)
            .values(heartbeat_at=now - timedelta(seconds=seconds))
        )


def test_an_unknown_owner_is_crashed_only_after_its_lease(engine: Engine) -> None:
    dataset_id = dataset(engine)
    elsewhere = RunOwner(label="other-host pid 7", key="")
    held = claim(engine, dataset_id, owner=elsewhere, lease_seconds=60)
    _age_heartbeat(engine, held, 30)
    with pytest.raises(DatasetBusyError):
        claim(engine, dataset_id, lease_seconds=60)
    _age_heartbeat(engine, held, 90)
    assert close_dead_runs(engine, lease_seconds=60) == [held]
    status, reason = next((s, r) for i, s, r in runs(engine) if i == held)
    assert status == "crashed"
    assert "no heartbeat from other-host pid 7" in str(reason)
    assert claim(engine, dataset_id, lease_seconds=60) > held


def test_heartbeat_renews_and_notices_a_lost_run(engine: Engine) -> None:
    dataset_id = dataset(engine)
    run_id = claim(engine, dataset_id)
    _age_heartbeat(engine, run_id, 120)
    with Heartbeat.of_run(engine, run_id, interval_seconds=0.05) as beat:
        time.sleep(0.4)
        assert close_dead_runs(engine, lease_seconds=60) == []  # renewed: not stale any more
        with session_scope(engine) as session:
            label_runs.mark_crashed(session, run_id=run_id, reason="declared by a test")
        deadline = time.monotonic() + 5
        while not beat.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.lost


def test_the_owner_has_the_last_word_on_its_own_run(engine: Engine) -> None:
    dataset_id = dataset(engine)
    run_id = claim(engine, dataset_id)
    with session_scope(engine) as session:
        assert label_runs.mark_crashed(session, run_id=run_id, reason="lapsed")
        assert label_runs.finish_label_run(session, run_id=run_id, status=RunStatus.COMPLETED)
        assert not label_runs.mark_crashed(session, run_id=run_id, reason="again")
    assert runs(engine) == [(run_id, "completed", None)]


def test_claims_racing_from_threads_leave_one_running_run(engine: Engine) -> None:
    dataset_id = dataset(engine)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def race() -> None:
        barrier.wait()
        try:
            claim(engine, dataset_id)
            outcomes.append("claimed")
        except DatasetBusyError:
            outcomes.append("refused")

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["claimed", "refused", "refused", "refused"]
    statuses = sorted(s for _, s, _ in runs(engine))
    assert statuses == ["failed", "failed", "failed", "running"]


def test_reasons_are_stored_on_one_line_and_bounded(engine: Engine) -> None:
    dataset_id = dataset(engine)
    run_id = claim(engine, dataset_id)
    with session_scope(engine) as session:
        label_runs.finish_label_run(
            session, run_id=run_id, status=RunStatus.FAILED, reason="a\nb  c" + "x" * 5000
        )
    ((_, status, reason),) = runs(engine)
    assert status == "failed"
    assert str(reason).startswith("a b cxx")
    assert len(str(reason)) == 1000
    assert "\n" not in reason


def test_heartbeat_constants_leave_room_for_missed_beats() -> None:
    assert run_lease.LEASE_SECONDS >= 4 * run_lease.HEARTBEAT_SECONDS
