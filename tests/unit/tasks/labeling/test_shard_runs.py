"""Shard runs on a work pool, below Prefect: sizing, attempt records (claim, progress, failure,
crash verdicts) and what is left of a shard after a dead attempt, on SQLite and PostgreSQL."""

import time
from collections import deque

import pytest
from sqlalchemy import Engine

from autolabel.storage.db import label_runs, label_shards, repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.image_results import record_image_results
from autolabel.storage.db.records import ImageIn, ImageOutcome
from autolabel.storage.db.tables import ResultStatus, ShardStatus
from autolabel.tasks.labeling.job import RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.run_lease import claim_dataset, death_reason, this_process
from autolabel.tasks.labeling.shard_runs import (
    ShardAttempt,
    ShardAttemptError,
    ShardLeaseLostError,
    ShardRunSizer,
    process_age_seconds,
    take_run,
)

FAST = {"heartbeat_seconds": 0.05}


def shards(sizes: list[int]) -> list[ShardRef]:
    out, next_id = [], 1
    for index, size in enumerate(sizes):
        out.append(ShardRef(index=index, image_ids=list(range(next_id, next_id + size))))
        next_id += size
    return out


def sizer(**kw: float) -> ShardRunSizer:
    options = {"images_per_run": 4096, "runs_in_flight": 4, "max_startup_fraction": 0.05} | kw
    return ShardRunSizer(**options)  # type: ignore[arg-type]


def attempt_result(startup: float, working: float, images: int) -> ShardResult:
    seconds = {"startup": startup, "shard_wall": startup + working}
    return ShardResult(index=0, images_done=images, seconds=seconds)


def test_runs_start_at_the_configured_size_and_share_a_small_job() -> None:
    assert sizer().size(100_000) == 4096
    assert sizer().size(1000) == 250  # an even share over 4 runs in flight


def test_runs_grow_until_the_measured_start_up_is_five_percent() -> None:
    fast = sizer()
    fast.observe(attempt_result(startup=12.0, working=100.0, images=2000))  # 20 images/s
    fast.observe(attempt_result(startup=10.0, working=50.0, images=1000))
    # median start-up 11 s at 20 images/s: 11 * 20 * 0.95 / 0.05 = 4180 images
    assert fast.target() == 4180
    startup, run = 11.0, 4180 / 20.0
    assert startup / (startup + run) == pytest.approx(0.05)
    slow = sizer()
    slow.observe(attempt_result(startup=10.0, working=400.0, images=400))  # 1 image/s
    assert slow.target() == 190  # slow models: small runs already amortise the start-up
    huge = sizer()
    huge.observe(attempt_result(startup=10.0, working=1.0, images=5000))
    assert huge.target() == 16 * 4096
    assert sizer(max_startup_fraction=0.0).target() == 4096
    fixed = sizer()
    fixed.observe(attempt_result(startup=0.0, working=10.0, images=10))  # nothing measured
    assert fixed.target() == 4096


def test_take_run_groups_planned_shards_in_order() -> None:
    planned = deque(shards([256] * 5))
    run, parts = take_run(planned, 600, index=7)
    assert (run.index, len(run.image_ids), parts) == (7, 512, 2)
    assert run.image_ids == list(range(1, 513))
    run, parts = take_run(planned, 10, index=8)  # smaller than a shard: one shard
    assert (len(run.image_ids), parts) == (256, 1)
    run, parts = take_run(planned, 10_000, index=9)
    assert (len(run.image_ids), parts, len(planned)) == (512, 2, 0)


def test_process_age_is_measured() -> None:
    age = process_age_seconds()
    assert 0.0 < age < 24 * 3600


def running_run(engine: Engine, n_images: int = 6) -> tuple[RunContext, list[int]]:
    with session_scope(engine) as session:
        dataset_id = repository.get_or_create_dataset(session, name="d")
        repository.register_images(
            session,
            dataset_id=dataset_id,
            images=[ImageIn(storage_key=f"s3://b/{i}.jpg", etag=f"e{i}") for i in range(n_images)],
        )
        ids = next(repository.iter_pending_image_ids(session, dataset_id=dataset_id, work_key="k"))
    run_id = claim_dataset(
        engine, dataset_id=dataset_id, parameters={}, flow_run_id="", owner=this_process()
    )
    ctx = RunContext(
        dataset_id=dataset_id, run_id=run_id, work_key="k", segmenter_version="s", category_ids={}
    )
    return ctx, ids


def test_an_attempt_records_progress_and_its_result(engine: Engine) -> None:
    ctx, ids = running_run(engine)
    shard = ShardRef(index=0, image_ids=ids)
    with ShardAttempt(engine, shard, ctx, attempt=1, flow_run_id="fr-1", **FAST) as record:
        record.on_device("cuda:1")
        record.written(2, 1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with session_scope(engine) as session:
                (row,) = label_shards.shard_attempts(session, run_id=ctx.run_id)
            if row.images_done == 2:
                break
            time.sleep(0.05)
        assert (row.status, row.device, row.images_failed) == (ShardStatus.RUNNING, "cuda:1", 1)
        assert row.flow_run_id == "fr-1"
        record.completed(ShardResult(index=0, images_done=5, images_failed=1, annotations=9))
    with session_scope(engine) as session:
        (row,) = label_shards.shard_attempts(session, run_id=ctx.run_id)
    assert row.status is ShardStatus.COMPLETED
    assert ShardResult.model_validate(row.result).annotations == 9
    assert (row.images_done, row.images_failed) == (5, 1)


def test_a_failed_attempt_says_why_and_the_same_attempt_never_runs_twice(engine: Engine) -> None:
    ctx, ids = running_run(engine)
    shard = ShardRef(index=3, image_ids=ids)

    def fail_after_one_image() -> None:
        with ShardAttempt(engine, shard, ctx, attempt=1, flow_run_id="fr") as record:
            record.written(1, 0)
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        fail_after_one_image()
    with session_scope(engine) as session:
        (row,) = label_shards.shard_attempts(session, run_id=ctx.run_id)
    assert row.status is ShardStatus.FAILED
    assert row.reason == "OSError: disk gone"
    assert row.images_done == 1
    with (
        pytest.raises(ShardAttemptError, match=r"attempt 1 of run \d+ already ran"),
        ShardAttempt(engine, shard, ctx, attempt=1, flow_run_id="fr"),
    ):
        pass


def test_no_attempt_runs_for_an_ended_run(engine: Engine) -> None:
    ctx, ids = running_run(engine)
    with session_scope(engine) as session:
        label_runs.mark_crashed(session, run_id=ctx.run_id, reason="its process is gone")
    with (
        pytest.raises(ShardAttemptError, match="is crashed: shard 0 attempt 2"),
        ShardAttempt(engine, ShardRef(index=0, image_ids=ids), ctx, attempt=2, flow_run_id=""),
    ):
        pass
    with session_scope(engine) as session:
        assert label_shards.shard_attempts(session, run_id=ctx.run_id) == []


def test_a_crash_verdict_stops_the_attempt_and_the_rest_is_what_it_did_not_store(
    engine: Engine,
) -> None:
    ctx, ids = running_run(engine)
    shard = ShardRef(index=0, image_ids=ids)
    with session_scope(engine) as session:
        record_image_results(
            session,
            run_id=ctx.run_id,
            work_key="k",
            outcomes=[
                ImageOutcome(image_id=ids[0], etag="e0", status=ResultStatus.DONE),
                ImageOutcome(image_id=ids[1], etag="e1", status=ResultStatus.FAILED),
            ],
        )
        assert repository.pending_among(session, image_ids=ids, work_key="k") == ids[1:]
        assert (
            repository.pending_among(session, image_ids=ids, work_key="k", retry_failed=False)
            == ids[2:]
        )
        assert repository.pending_among(session, image_ids=[], work_key="k") == []

    def declared_crashed_while_running() -> None:
        with ShardAttempt(engine, shard, ctx, attempt=1, flow_run_id="", **FAST) as record:
            with session_scope(engine) as session:
                (row,) = label_shards.shard_attempts(session, run_id=ctx.run_id)
                now = label_runs.database_now(session)
                assert death_reason(row.lease, now=now, lease_seconds=60) is None
                assert label_shards.mark_shard_crashed(session, shard_id=row.id, reason="gone")
            time.sleep(0.5)  # a few heartbeats: the first after the verdict finds it lost
            record.completed(ShardResult(index=0))

    with pytest.raises(ShardLeaseLostError, match="declared crashed by the job's process"):
        declared_crashed_while_running()
    with session_scope(engine) as session:
        (row,) = label_shards.shard_attempts(session, run_id=ctx.run_id)
    assert row.status is ShardStatus.FAILED  # the owner's own word replaces the verdict
    assert "ShardLeaseLostError" in str(row.reason)
