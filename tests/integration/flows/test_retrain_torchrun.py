"""`retrain-sam` with `processes_per_node=2`: the training step runs under torchrun (2 gloo ranks
on CPU), resumes from the store after its processes were killed, and leaves no process behind.

Same setting as test_retrain_resume.py (PostgreSQL, moto S3, the tiny test model from random
initialisation, `margin=1.0` so that nothing is promoted and every run has the same training key);
the flow runs in a subprocess wherever it is killed.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from autolabel.flows.retrain import RetrainRequest, retrain_sam
from autolabel.tasks.training.torchrun_launch import TrainingProcessError
from tests.integration.flows.conftest import ROOT, FlowEnv
from tests.integration.flows.test_retrain_flow import request_on, versions
from tests.integration.flows.test_retrain_resume import (
    RUN_FLOW,
    logged_steps,
    make_request,
    stored_step,
)

pytestmark = pytest.mark.integration

STEPS, EVERY = 12, 2


class Lines(logging.Handler):
    """Collects the messages of a logger (Prefect's task run logger here)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def task_log() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def two_process_request(env: FlowEnv, tmp_path: Path) -> RetrainRequest:
    update = {"processes_per_node": 2, "max_steps": STEPS, "checkpoint_every": EVERY}
    return make_request(env, tmp_path).model_copy(update=update)


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its command line."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().decode()
            except OSError:
                continue
            todo.append(child)
    return {p: cmd.replace("\0", " ") for p, cmd in found.items()}


def running(pids: list[int]) -> list[int]:
    """Those of `pids` that still run (a zombie no longer does)."""
    alive = []
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def start_flow(request: RetrainRequest, log: Path) -> "subprocess.Popen[bytes]":
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    argv = [sys.executable, "-c", RUN_FLOW, request.model_dump_json()]
    with log.open("w") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def training_tree(
    proc: "subprocess.Popen[bytes]", training_root: Path, log: Path, at_least: int
) -> dict[int, str]:
    """Wait for a stored checkpoint at step >= `at_least`; the flow's processes below it then."""
    deadline = time.monotonic() + 150
    while stored_step(training_root) < at_least:
        assert proc.poll() is None, f"the flow ended early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint stored:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    tree = descendants(proc.pid)
    ranks = [cmd for cmd in tree.values() if "autolabel.tasks.training.rank_entry" in cmd]
    assert len(ranks) == 3, tree  # torchrun and its two ranks
    return tree


def assert_all_gone(tree: dict[int, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while running(list(tree)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert running(list(tree)) == [], {p: tree[p] for p in running(list(tree))}


@pytest.mark.timeout(300)
def test_two_processes_train_with_world_size_two(
    flow_env: FlowEnv, tmp_path: Path, task_log: Lines
) -> None:
    request = two_process_request(flow_env, tmp_path).model_copy(update={"max_steps": 4})
    result = retrain_sam(request)
    training_dir = flow_env.home / "store" / "training" / result.training_url.rsplit("/", 1)[1]
    summary = json.loads((training_dir / "result.json").read_text())
    assert (summary["world_size"], summary["step"]) == (2, 4)
    assert logged_steps(training_dir) == [1, 2, 3, 4]
    meta = torch.load(training_dir / "model.pt", weights_only=True)["meta"]
    assert meta["world_size"] == 2
    assert result.resumed_from_step == 0
    assert (result.training_data.used, result.training_data.skipped) == (8, 0)  # 4 steps x 2
    assert result.sha256 == summary["sha256"]
    assert versions(flow_env) == [(result.candidate.name, "candidate")]
    # Each rank's lines reached the task's log.
    for rank in (0, 1):
        assert any(f"rank {rank} INFO" in m and "of 2 on" in m for m in task_log.messages)


@pytest.mark.timeout(300)
def test_killed_training_processes_fail_the_run_and_a_rerun_resumes(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    request = two_process_request(flow_env, tmp_path)
    training_root, log = flow_env.home / "store" / "training", tmp_path / "killed.log"
    proc = start_flow(request, log)
    tree = training_tree(proc, training_root, log, at_least=EVERY)
    (torchrun,) = [p for p, cmd in tree.items() if "torch.distributed.run" in cmd]
    os.kill(torchrun, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    assert_all_gone(tree, timeout=30)  # the ranks died with torchrun
    error = (
        "TrainingProcessError: training in 2 processes (torchrun) exited with signal SIGKILL "
        "(code -9): "
    )
    assert error in log.read_text()
    killed_at = stored_step(training_root)
    assert EVERY <= killed_at < STEPS
    (training_dir,) = training_root.iterdir()

    resumed = retrain_sam(request)
    assert resumed.resumed_from_step == killed_at  # not step 0
    assert logged_steps(training_dir) == list(range(1, STEPS + 1))  # each step once, to the end
    summary = json.loads((training_dir / "result.json").read_text())
    assert (summary["step"], summary["world_size"]) == (STEPS, 2)
    assert not (training_dir / "checkpoints" / "last.pt").exists()


@pytest.mark.timeout(300)
def test_a_stopped_flow_stops_its_training_processes(flow_env: FlowEnv, tmp_path: Path) -> None:
    request = two_process_request(flow_env, tmp_path).model_copy(update={"max_steps": 400})
    training_root = flow_env.home / "store" / "training"

    # SIGTERM: passed on to torchrun and the ranks, which checkpoint the step they are at.
    proc = start_flow(request, tmp_path / "terminated.log")
    tree = training_tree(proc, training_root, tmp_path / "terminated.log", at_least=EVERY)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert_all_gone(tree, timeout=30)
    text = (tmp_path / "terminated.log").read_text()
    assert "(checkpoint written)" in text, text[-3000:]
    stopped_at = stored_step(training_root)

    # SIGKILL: the flow process cannot pass anything on; the ranks see their input pipe close.
    proc = start_flow(request, tmp_path / "killed.log")
    tree = training_tree(proc, training_root, tmp_path / "killed.log", at_least=stopped_at + 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert_all_gone(tree, timeout=60)
    assert stored_step(training_root) > stopped_at
    assert versions(flow_env) == []


@pytest.mark.timeout(120)
def test_a_failing_training_process_fails_the_task_in_one_line(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "sa_1.json").write_text("{}")  # in a store, only tar shards are read
    flow_env.upload_folder(tmp_path / "train", "sa1b/train/")
    request = request_on(flow_env, max_steps=2, from_scratch=True, processes_per_node=2)
    with pytest.raises(TrainingProcessError) as raised:
        retrain_sam(request)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("training in 2 processes (torchrun) exited with code 1: rank ")
    assert message.endswith(
        "FormatError: expected SA-1B tar shards (.tar, .tar.gz, .tgz) in "
        f"s3://{flow_env.bucket}/sa1b/train"
    )
