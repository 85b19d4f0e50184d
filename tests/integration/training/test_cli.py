"""`autolabel train` skips a bad shard by name; `autolabel eval` writes the metrics JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

from autolabel.models.registry import create_model
from tests.synthetic import write_synthetic_shards


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    code = f"from autolabel.flows.cli import main; main({args!r})"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOLABEL_")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
        check=False,
    )  # fmt: skip


def test_train_skips_a_truncated_shard_then_eval_reports_metrics(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_synthetic_shards(data, shards=3, images_per_shard=2, height=48, width=64, seed=4)
    bad = data / "sa_000001.tar"
    bad.write_bytes(bad.read_bytes()[:2500])
    out = tmp_path / "run"
    result = _cli([
        "train", "--data", str(data), "--model", "efficientvit-sam-test", "--max-steps", "5",
        "--output", str(out), "--images-per-batch", "1", "--max-masks", "2", "--lr", "1e-3",
        "--num-workers", "0", "--checkpoint-every", "2", "--device", "cpu",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 5  # 4 good images: epoch 0 read every shard
    assert any(bad["name"].endswith("sa_000001.tar") for bad in summary["bad_data"])
    assert all(bad["reason"] for bad in summary["bad_data"])
    assert summary["samples_used"] == 5  # one image per step
    assert summary["samples_skipped"] >= 1
    assert "sa_000001.tar" in result.stderr  # logged by name
    assert (out / "model.pt").is_file()
    create_model(
        "efficientvit-sam-test", checkpoint_path=out / "model.pt", expected_sha256=summary["sha256"]
    )

    bad.unlink()
    metrics_path = tmp_path / "metrics.json"
    result = _cli([
        "eval", "--data", str(data), "--model", "efficientvit-sam-test",
        "--checkpoint", str(out / "model.pt"), "--json", str(metrics_path), "--max-images", "2",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(metrics_path.read_text())
    assert metrics["images"] == 2
    assert metrics["count"] > 0
    for key in ("miou", "miou_1click", "miou_3click", "miou_5click"):
        assert 0.0 <= metrics[key] <= 1.0
    assert (
        metrics["count_small"] + metrics["count_medium"] + metrics["count_large"]
        == (metrics["count"])
    )
