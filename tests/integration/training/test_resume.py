"""Runs stopped by SIGTERM, then killed hard after a checkpoint, resume to the same loss curve."""

import signal
from pathlib import Path

import pytest
import torch

from tests.integration.training.conftest import (
    config,
    losses,
    run_entry,
    start_entry,
    wait_for_steps,
)

STEPS = 4


def _assert_same_run(out: Path, reference: Path) -> None:
    assert losses(out / "metrics.jsonl") == pytest.approx(
        losses(reference / "metrics.jsonl"), abs=1e-6, rel=0
    )
    a = torch.load(out / "model.pt", weights_only=True)["model"]
    b = torch.load(reference / "model.pt", weights_only=True)["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_sigterm_then_hard_kill_resume_to_the_uninterrupted_curve(
    shards: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    done = run_entry(config(shards, reference, max_steps=STEPS, checkpoint_every=100))
    assert done["step"] == STEPS

    out = tmp_path / "interrupted"
    cfg = config(shards, out, max_steps=STEPS, checkpoint_every=2)
    metrics = out / "metrics.jsonl"
    # 1) SIGTERM during step 1: the run finishes the step, checkpoints and exits cleanly
    proc = start_entry(cfg)
    wait_for_steps(metrics, 1, proc, timeout=180)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert '"interrupted": true' in stdout
    assert not (out / "model.pt").exists()
    stopped_at = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    assert stopped_at == len(losses(metrics))
    assert stopped_at <= 2
    # 2) resumed, then SIGKILL once step 3 is logged: the step-2 checkpoint survives
    proc = start_entry(cfg)
    wait_for_steps(metrics, 3, proc, timeout=240)
    proc.kill()
    proc.communicate(timeout=60)
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    # 3) resumed from step 2: steps 3 and 4 run again and match the reference
    result = run_entry(cfg)
    assert result["step"] == STEPS
    assert len(result["losses"]) == 2
    _assert_same_run(out, reference)
