"""Two-process DDP on CPU (gloo, via torchrun) matches one process accumulating two batches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.integration.training.conftest import ENTRY, config, losses, run_entry
from tests.synthetic import write_synthetic_shards


def test_two_gloo_processes_average_gradients_like_accumulation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # one shard: both ranks read it and keep alternate samples (0, 2, ... and 1, 3, ...)
    write_synthetic_shards(data, shards=1, images_per_shard=4, height=48, width=64, seed=2)
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, str(ENTRY), config(data, ddp_out, max_steps=2, checkpoint_every=1)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2  # one per rank, both finished
    assert summaries[0]["losses"] == summaries[1]["losses"]  # the mean over ranks

    # one process, micro-batches [sample 0], [sample 1] then [2], [3]: the same data per step
    run_entry(config(data, single_out, max_steps=2, checkpoint_every=1, grad_accum=2))
    assert losses(ddp_out / "metrics.jsonl") == pytest.approx(
        losses(single_out / "metrics.jsonl"), rel=1e-5
    )
    state = torch.load(ddp_out / "checkpoints" / "last.pt", weights_only=True)
    assert len(state["ranks"]) == 2
    a = torch.load(ddp_out / "model.pt", weights_only=True)["model"]
    b = torch.load(single_out / "model.pt", weights_only=True)["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
