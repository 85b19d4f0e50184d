"""One labeling job spread over two process workers of one work pool, on a real Prefect server
(PostgreSQL) and a real S3 endpoint (moto): `autolabel label` against the server submits its
shards as flow runs of the `label-shard` deployment registered from deploy/prefect.yaml. One
worker is killed (SIGKILL, with its flow-run process) in the middle of a shard; the job reruns
what that shard had not stored on the other worker and ends with exactly the annotations of the
uninterrupted single-process reference run."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.integration.faults.conftest import (
    REFERENCE,
    Command,
    FaultWorld,
    descendants,
    wait_gone,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
PREFECT = Path(sys.executable).parent / "prefect"
DATASET = "two-workers"


def _server_env(world: FaultWorld, api: str) -> dict[str, str]:
    return world.env | {
        "PREFECT_API_URL": api,
        "AUTOLABEL_PREFECT_API": "server",
        "AUTOLABEL_CODE_DIR": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


def _prefect(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(PREFECT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _start_worker(world: FaultWorld, env: dict[str, str], pool: str, name: str) -> Command:
    out, err = world.folder / f"worker-{name}.out", world.folder / f"worker-{name}.err"
    argv = [str(PREFECT), "worker", "start", "--pool", pool, "--type", "process"]
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [*argv, "--name", name, "--limit", "1"],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    return Command(process, out, err)


def _running_shard(world: FaultWorld) -> tuple[int, int] | None:
    """(owner pid, shard index) of a running attempt that stored some but not all of its
    images, None when there is none yet."""
    rows = world.rows(
        "SELECT s.owner, s.shard_index FROM label_shards s JOIN label_runs r ON r.id = s.run_id "
        "JOIN datasets d ON d.id = r.dataset_id WHERE d.name = :n AND s.status = 'running'",
        n=DATASET,
    )
    for owner, index in rows:
        first = 4 * int(str(index))  # shards of 4 images, in image id order
        done = world.rows(
            "SELECT count(*) FROM (SELECT i.id FROM images i JOIN datasets d "
            "ON d.id = i.dataset_id WHERE d.name = :n ORDER BY i.id LIMIT 4 OFFSET :o) s "
            "JOIN image_results r ON r.image_id = s.id AND r.status = 'done'",
            n=DATASET,
            o=first,
        )[0][0]
        if 0 < int(str(done)) < 4:
            return int(str(owner).rsplit(" ", 1)[1]), int(str(index))
    return None


def _coco(world: FaultWorld, dataset: str) -> list[tuple[object, ...]]:
    """The COCO export of `dataset` (`autolabel export`), as comparable annotation rows (ids and
    dates differ between datasets)."""
    path = world.folder / f"{dataset}.coco.json"
    exported = world.run(["export", "--dataset", dataset, "--output", str(path), "--overlays", "0"])
    assert exported.process.returncode == 0, exported.stderr[-3000:]
    coco = json.loads(path.read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    rows = [
        (
            names[a["image_id"]],
            categories[a["category_id"]],
            json.dumps(a["segmentation"]),
            *a["bbox"],
            a["area"],
            a.get("score"),
        )
        for a in coco["annotations"]
    ]
    assert len(names) == len(coco["images"])
    return sorted(rows, key=str)


def _worker_of_flow_runs(api: str, since: str) -> dict[str, str]:
    """Flow run id -> name of the worker that submitted it, from the server's worker events."""
    event = {"event": {"name": ["prefect.worker.submitted-flow-run"]}, "occurred": {"since": since}}
    response = httpx.post(f"{api}/events/filter", json={"filter": event, "limit": 50}, timeout=10)
    response.raise_for_status()
    found = {}
    for event in response.json()["events"]:
        for related in event.get("related", []):
            if related.get("prefect.resource.role") == "flow-run":
                flow_run = related["prefect.resource.id"].removeprefix("prefect.flow-run.")
                found[flow_run] = event["resource"]["prefect.resource.name"]
    return found


@pytest.mark.timeout(900)
def test_one_job_on_two_workers_survives_a_killed_worker(
    fault_world: FaultWorld, prefect_server: str
) -> None:
    env = _server_env(fault_world, prefect_server)
    since = datetime.now(UTC).isoformat()
    pool = f"shards-{uuid.uuid4().hex[:8]}"
    _prefect(["work-pool", "create", pool, "--type", "process"], env)
    deploy = ["deploy", "--prefect-file", "deploy/prefect.yaml", "--name", "label-shard"]
    _prefect([*deploy, "--pool", pool], env)
    workers = {name: _start_worker(fault_world, env, pool, name) for name in ("a", "b")}
    job = fault_world.start(
        [*fault_world.label_argv(DATASET), "--shard-size", "4", "--batch-size", "1"],
        **{k: v for k, v in env.items() if k not in fault_world.env},
        AUTOLABEL_LABELING__IMAGES_PER_SHARD_RUN="4",
    )
    killed = ""
    try:
        deadline = time.monotonic() + 300
        while not killed:
            assert job.process.poll() is None, job.stderr[-3000:]
            assert time.monotonic() < deadline, "no shard run was seen mid-shard"
            found = _running_shard(fault_world)
            for name, worker in workers.items():
                below = descendants(worker.process.pid)
                if found is not None and found[0] in below:
                    # The host is lost: the worker and every process it started (Prefect's
                    # process worker starts each flow run in a session of its own).
                    os.killpg(worker.process.pid, signal.SIGKILL)
                    for pid in below:
                        with suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    worker.process.wait(timeout=30)
                    assert wait_gone(below) == set(), "a flow-run process outlived its worker"
                    killed = name
            time.sleep(0.1)
        assert job.wait(timeout=600) == 0, job.stderr[-3000:]
    finally:
        # Prefect's workers are stopped as an operator would (Ctrl-C); one that does not stop
        # within a minute is killed, and the test says what it was still running.
        stuck = [w.interrupt() for w in workers.values() if w.process.poll() is None]
        # The server is shared: later jobs on it must not find this deployment.
        _prefect(["deployment", "delete", "autolabel-shard/label-shard"], env)
        _prefect(["work-pool", "delete", pool], env)

    assert not any(stuck), stuck
    fault_world.check_invariants(DATASET, [job])
    assert _coco(fault_world, DATASET) == _coco(fault_world, REFERENCE)
    attempts = fault_world.rows(
        "SELECT s.shard_index, s.attempt, s.status, s.status_reason, s.flow_run_id "
        "FROM label_shards s JOIN label_runs r ON r.id = s.run_id JOIN datasets d "
        "ON d.id = r.dataset_id WHERE d.name = :n ORDER BY s.shard_index, s.attempt",
        n=DATASET,
    )
    statuses = Counter(str(status) for _, _, status, _, _ in attempts)
    assert statuses == {"completed": 4, "crashed": 1}, attempts
    crashed = next(a for a in attempts if a[2] == "crashed")
    assert "is gone" in str(crashed[3])
    assert any(a[0] == crashed[0] and a[1] == 2 and a[2] == "completed" for a in attempts)
    state = httpx.get(f"{prefect_server}/flow_runs/{crashed[4]}", timeout=5).json()["state"]
    assert state["type"] == "CRASHED", state

    # Both workers labeled: the killed one stored part of its shard, the other the rest.
    submitted_by = _worker_of_flow_runs(prefect_server, since)
    assert submitted_by[str(crashed[4])] == killed
    completed_by = {submitted_by[str(a[4])] for a in attempts if a[2] == "completed"}
    assert completed_by | {killed} == {"a", "b"}, submitted_by
