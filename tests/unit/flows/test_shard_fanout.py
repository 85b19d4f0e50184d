"""The job's side of shard runs with a small fake of the Prefect calls (the real server, workers
and a killed worker are in tests/integration/faults/test_shard_workers.py): the bound on runs in
flight, reruns of what a dead attempt left, and the failure after the last attempt."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from sqlalchemy import update
from sqlalchemy.engine import make_url

from autolabel.flows import shard_fanout
from autolabel.flows.shard_fanout import ShardFanOut, ShardRunsFailedError
from autolabel.storage.config import S3Config
from autolabel.storage.db import label_shards, repository
from autolabel.storage.db.engine import session_scope, upgrade_to_head
from autolabel.storage.db.image_results import record_image_results
from autolabel.storage.db.label_runs import database_now
from autolabel.storage.db.records import ImageIn, ImageOutcome
from autolabel.storage.db.tables import (
    Image,
    LabelShard,
    ResultStatus,
    RunStatus,
    ShardStatus,
)
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.progress import ShardTally
from autolabel.tasks.labeling.run_lease import claim_dataset, this_process
from autolabel.tasks.labeling.shard_runs import ShardRunSizer
from autolabel.tasks.resources import ResourceConfig, Resources


class FakePool:
    """Stands for the server and its workers: each submitted run 'runs' at the next poll,
    storing its images and recording its attempt as `behaviour(shard, attempt)` says."""

    def __init__(self, resources: Resources, ctx: RunContext) -> None:
        self.resources, self.ctx = resources, ctx
        self.runs: dict[uuid.UUID, dict[str, Any]] = {}
        self.most_in_flight = 0
        self.behaviour: dict[tuple[int, int], str] = {}
        self.set_states: list[tuple[uuid.UUID, str]] = []

    def run_deployment(self, deployment: uuid.UUID, *, parameters: dict[str, Any], **_: Any) -> Any:
        del deployment
        run_id = uuid.uuid4()
        self.runs[run_id] = {**parameters, "state": None, "key": _["idempotency_key"]}
        active = sum(1 for r in self.runs.values() if r["state"] is None)
        self.most_in_flight = max(self.most_in_flight, active)
        return SimpleNamespace(id=run_id)

    def _run(self, run_id: uuid.UUID, run: dict[str, Any]) -> StateType:
        shard, attempt = ShardRef.model_validate(run["shard"]), run["attempt"]
        what = self.behaviour.get((shard.index, attempt), "complete")
        stored = shard.image_ids[:1] if what in ("die", "fail") else shard.image_ids
        with session_scope(self.resources.engine) as session:
            record_image_results(
                session,
                run_id=self.ctx.run_id,
                work_key=self.ctx.work_key,
                outcomes=[
                    ImageOutcome(image_id=i, etag=f"e{i}", status=ResultStatus.DONE) for i in stored
                ],
            )
            row = label_shards.start_shard(
                session,
                run_id=self.ctx.run_id,
                shard_index=shard.index,
                attempt=attempt,
                flow_run_id=str(run_id),
                owner="gone pid 1",
                owner_key="",
            )
            if what == "die":  # the process vanished: the row stays running, heartbeat stale
                stale = database_now(session).replace(year=2000)
                session.execute(
                    update(LabelShard).where(LabelShard.id == row).values(heartbeat_at=stale)
                )
                return StateType.RUNNING
            status = ShardStatus.COMPLETED if what == "complete" else ShardStatus.FAILED
            result = ShardResult(index=shard.index, images_done=len(stored))
            label_shards.finish_shard(
                session,
                shard_id=row,
                status=status,
                result=result.model_dump(mode="json") if what == "complete" else None,
                images_done=len(stored),
                reason=None if what == "complete" else "RuntimeError: boom",
            )
        return StateType.COMPLETED if what == "complete" else StateType.FAILED

    def read_flow_runs(self, **_: Any) -> list[Any]:
        for run_id, run in self.runs.items():
            if run["state"] is None:
                run["state"] = self._run(run_id, run)
        return [
            SimpleNamespace(id=i, state=SimpleNamespace(type=r["state"]))
            for i, r in self.runs.items()
        ]

    def set_flow_run_state(self, run_id: uuid.UUID, state: Any, force: bool) -> None:
        assert force
        self.set_states.append((run_id, state.type.value))
        self.runs[run_id]["state"] = state.type

    def __enter__(self) -> "FakePool":
        return self

    def __exit__(self, *_: object) -> None:
        return None


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakePool, Any]]:
    url = f"sqlite:///{tmp_path / 'fanout.db'}"
    upgrade_to_head(url)
    resources = Resources(
        ResourceConfig(database_url=make_url(url), s3=S3Config(), weights_dir=tmp_path)
    )
    with session_scope(resources.engine) as session:
        dataset_id = repository.get_or_create_dataset(session, name="d")
        images = [ImageIn(storage_key=f"s3://b/{i}.jpg", etag="") for i in range(12)]
        repository.register_images(session, dataset_id=dataset_id, images=images)
        ids = next(repository.iter_pending_image_ids(session, dataset_id=dataset_id, work_key="k"))
        for i in ids:  # etags equal to the ones the fake records
            session.execute(update(Image).where(Image.id == i).values(etag=f"e{i}"))
    run_id = claim_dataset(
        resources.engine,
        dataset_id=dataset_id,
        parameters={},
        flow_run_id="",
        owner=this_process(),
    )
    ctx = RunContext(
        dataset_id=dataset_id, run_id=run_id, work_key="k", segmenter_version="s", category_ids={}
    )
    pool = FakePool(resources, ctx)
    monkeypatch.setattr(shard_fanout, "run_deployment", pool.run_deployment)
    monkeypatch.setattr(shard_fanout, "get_client", lambda **_: pool)
    monkeypatch.setattr(shard_fanout, "POLL_SECONDS", 0.0)

    def fan_out(runs_in_flight: int, attempts: int = 3) -> tuple[ShardFanOut, list[int]]:
        job = LabelJob(source="s3://b/", dataset="d", prompts=["x"])
        progress: list[int] = []
        fan = ShardFanOut(
            uuid.uuid4(),
            job,
            ctx,
            resources=resources,
            sizer=ShardRunSizer(
                images_per_run=1000, runs_in_flight=runs_in_flight, max_startup_fraction=0.05
            ),
            attempts=attempts,
            tally=ShardTally(1.0),
            heartbeat=SimpleNamespace(lost=False),  # type: ignore[arg-type]
            on_progress=lambda done, failed: progress.append(done + failed),
            on_shard_done=lambda: None,
        )
        return fan, progress

    pool.ids = ids  # type: ignore[attr-defined]
    yield pool, fan_out
    resources.close()


def shards_of(ids: list[int], size: int) -> list[ShardRef]:
    return [
        ShardRef(index=n, image_ids=ids[i : i + size])
        for n, i in enumerate(range(0, len(ids), size))
    ]


def test_runs_in_flight_are_bounded_and_results_summed(world: tuple[FakePool, Any]) -> None:
    pool, fan_out = world
    fan, progress = fan_out(runs_in_flight=2)
    assert fan.run(shards_of(pool.ids, 2)) is RunStatus.COMPLETED  # type: ignore[attr-defined]
    assert pool.most_in_flight == 2
    # Runs take an even share of what is left over the 2 in flight (6, then 2 + 2 + 2).
    sizes = [len(r["shard"]["image_ids"]) for r in pool.runs.values()]
    assert sizes == [6, 2, 2, 2]
    # Another job process with the same run id (another database on this server) never gets
    # these flow runs back from the server's idempotency keys.
    again, _ = fan_out(runs_in_flight=2)
    keys = {r["key"] for r in pool.runs.values()}
    assert len(keys) == 4
    assert all(fan._token in key and again._token not in key for key in keys)
    assert fan.tally.processed == 12
    assert sum(progress) == 12


def test_a_dead_attempt_is_crashed_and_its_rest_rerun(world: tuple[FakePool, Any]) -> None:
    pool, fan_out = world
    pool.behaviour = {(1, 1): "die", (2, 1): "fail"}
    fan, _ = fan_out(runs_in_flight=8)
    assert fan.run(shards_of(pool.ids, 4)) is RunStatus.COMPLETED  # type: ignore[attr-defined]
    reruns = [ShardRef.model_validate(r["shard"]) for r in pool.runs.values() if r["attempt"] == 2]
    assert sorted((s.index, len(s.image_ids)) for s in reruns) == [(1, 3), (2, 3)]
    assert [state for _, state in pool.set_states] == ["CRASHED"]
    with session_scope(pool.resources.engine) as session:
        attempts = label_shards.shard_attempts(session, run_id=pool.ctx.run_id)
    crashed = [a for a in attempts if a.status is ShardStatus.CRASHED]
    assert len(crashed) == 1
    assert "no heartbeat" in str(crashed[0].reason)


def test_a_shard_failing_every_attempt_fails_the_job_after_the_others(
    world: tuple[FakePool, Any],
) -> None:
    pool, fan_out = world
    pool.behaviour = {(0, 1): "fail", (0, 2): "fail"}
    fan, _ = fan_out(runs_in_flight=8, attempts=2)
    with pytest.raises(ShardRunsFailedError, match=r"shard 0: RuntimeError: boom"):
        fan.run(shards_of(pool.ids, 4))  # type: ignore[attr-defined]
    done = [r for r in pool.runs.values() if r["state"] is StateType.COMPLETED]
    assert len(done) == 2  # shards 1 and 2 finished
