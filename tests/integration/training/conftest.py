"""Helpers of the training integration tests: synthetic shards and training subprocesses."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.synthetic import write_synthetic_shards

ENTRY = Path(__file__).with_name("train_entry.py")
BASE = {
    "model_name": "efficientvit-sam-test", "images_per_batch": 1, "max_masks": 2,
    "lr": 1e-3, "seed": 7, "num_workers": 0, "freeze_bn": True,
}  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic SA-1B shards of three images each."""
    folder = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(folder, shards=2, images_per_shard=3, height=48, width=64, seed=1)
    return folder


def config(data: Path, output: Path, **fields: Any) -> str:
    return json.dumps({**BASE, "data": str(data), "output": str(output), **fields})


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONHASHSEED": "0"}


def run_entry(cfg: str, *, timeout: float = 240) -> dict[str, Any]:
    """Run a training subprocess to completion and return its JSON summary."""
    proc = subprocess.run(
        [sys.executable, str(ENTRY), cfg], capture_output=True, text=True, timeout=timeout,
        env=env(), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def start_entry(cfg: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ENTRY), cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env(),
    )  # fmt: skip


def wait_for_steps(metrics: Path, steps: int, proc: subprocess.Popen[str], timeout: float) -> None:
    """Block until `metrics` has at least `steps` lines (or fail if the process ends first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= steps:
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"training ended early: {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.05)
    raise AssertionError(f"no {steps} steps logged in {timeout} s")


def losses(metrics: Path) -> list[float]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["loss"] for r in rows]
