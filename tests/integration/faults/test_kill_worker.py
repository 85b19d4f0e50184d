"""kill -9 of a worker host mid-shard: `autolabel serve` on a real Prefect server (PostgreSQL)
runs the labeling deployment; the worker and the flow run it started are killed together (a
machine or pod lost), then a new worker runs the job again and finishes exactly the rest."""

import os
import signal
import time

import httpx
import pytest

from autolabel.tasks.labeling.job import LabelJob
from tests.integration.faults.conftest import (
    N_IMAGES,
    Command,
    FaultWorld,
    descendants,
    wait_gone,
)

pytestmark = pytest.mark.integration
DEPLOYMENT = "autolabel-dataset/label"


def job_parameters(world: FaultWorld, dataset: str) -> dict[str, object]:
    """The job `FaultWorld.label_argv` describes, as deployment parameters."""
    job = LabelJob.model_validate(
        {
            "source": world.source(),
            "dataset": dataset,
            "prompts": "box . disc",
            "detector": "grounding-dino-test",
            "segmenter": "efficientvit-sam-test",
            "random_weights": True,
            "thresholds": {
                "box_threshold": 0.0,
                "text_threshold": 0.0,
                "nms_iou": 0.5,
                "duplicate_policy": "keep_best",
                "max_detections": 3,
            },
            "shard_size": 8,
            "batch_size": 2,
            "segmenter_backend": "torch",  # the pace the faults are timed against
            "detector_backend": "torch",
        }
    )
    return {"job": job.model_dump(mode="json")}


def start_worker(world: FaultWorld, api: str) -> tuple[Command, str]:
    """`autolabel serve` against `api`; returns it and the labeling deployment's id."""
    worker = world.start(["serve"], PREFECT_API_URL=api, AUTOLABEL_PREFECT_API="server")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.stderr[-3000:]
        response = httpx.get(f"{api}/deployments/name/{DEPLOYMENT}", timeout=5)
        if response.status_code == 200:
            return worker, str(response.json()["id"])
        time.sleep(0.5)
    raise AssertionError("the worker did not register its deployments")


def run_deployment(api: str, deployment_id: str, parameters: dict[str, object]) -> str:
    response = httpx.post(
        f"{api}/deployments/{deployment_id}/create_flow_run",
        json={"parameters": parameters},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def wait_final(api: str, flow_run_id: str, timeout: float = 420) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=5).json()["state"]
        if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return str(state["type"])
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s")


def kill_host(worker: Command) -> set[int]:
    """SIGKILL the worker's whole process group (the worker and its flow-run processes)."""
    below = descendants(worker.process.pid)
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=30)
    return below


@pytest.mark.timeout(900)
def test_worker_killed_mid_shard_then_a_new_worker_finishes(
    fault_world: FaultWorld, prefect_server: str
) -> None:
    dataset = "kill-worker"
    parameters = job_parameters(fault_world, dataset)
    worker, deployment = start_worker(fault_world, prefect_server)
    run_deployment(prefect_server, deployment, parameters)
    interrupted_at = fault_world.wait_done(dataset, 5, worker)
    assert wait_gone(kill_host(worker)) == set(), "flow-run processes outlived their worker"
    assert interrupted_at < N_IMAGES

    worker, deployment = start_worker(fault_world, prefect_server)
    try:
        rerun = run_deployment(prefect_server, deployment, parameters)
        assert wait_final(prefect_server, rerun) == "COMPLETED", worker.stderr[-3000:]
    finally:
        stuck = worker.interrupt()
    assert stuck is None, stuck
    runs = fault_world.runs(dataset)
    assert [status for _, status, _, _ in runs] == ["crashed", "completed"]
    assert "is gone" in str(runs[0][2])
    fault_world.check_invariants(dataset, [])
