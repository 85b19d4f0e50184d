"""Bad SA-1B items are skipped one by one, never the rest of their source: `autolabel eval` on a
folder whose second sample is bad evaluates the other three and reports the bad one; training
counts the samples it used and the bad items it skipped, across a resume."""

import json
import os
from pathlib import Path

import pytest

from autolabel.tasks.training.train_config import TrainConfig
from autolabel.tasks.training.trainer import run_training
from tests.integration.cli.conftest import run_cli
from tests.synthetic import write_with_bad_rles

pytestmark = pytest.mark.integration


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_API"))}
    env.update(
        AUTOLABEL_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def test_eval_uses_the_good_samples_after_a_bad_one_and_reports_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_with_bad_rles(data, count=4, bad_ids={2}, seed=3)
    out = tmp_path / "out.json"
    args = ["eval", "--data", str(data), "--model", "efficientvit-sam-test", "--json", str(out)]
    result = run_cli(args, _env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert (metrics["images"], metrics["skipped"]) == (3, 1)
    (skipped,) = metrics["skipped_items"]
    assert skipped["name"] == str(data.resolve() / "sa_2.json")
    assert "expected an RLE of size [48, 64]" in skipped["reason"]
    assert f"skipped {skipped['name']}: {skipped['reason']}" in result.stderr.splitlines()
    assert 0.0 <= metrics["miou"] <= 1.0
    assert metrics["count"] > 0


def test_training_counts_used_and_skipped_samples_across_a_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_with_bad_rles(data, count=4, bad_ids={2}, seed=3)
    base = {
        "data": str(data), "model_name": "efficientvit-sam-test", "images_per_batch": 1,
        "max_masks": 1, "lr": 1e-3, "device": "cpu", "freeze_bn": True, "num_workers": 0,
    }  # fmt: skip
    # Steps 1-3 take samples 1, 3, 4 (sa_2 skipped); steps 4-5 take 1 and 3 of epoch 1 (sa_2
    # skipped again).
    full = run_training(TrainConfig(output=tmp_path / "full", max_steps=5, **base))  # type: ignore[arg-type]
    assert (full.samples_used, full.samples_skipped) == (5, 2)
    assert [b.name for b in full.bad_data] == [str(data.resolve() / "sa_2.json")]
    assert "expected an RLE of size [48, 64]" in full.bad_data[0].reason
    # The same run stopped after step 3 and resumed: the counts carry over the checkpoint.
    part = tmp_path / "part"
    first = run_training(TrainConfig(output=part, max_steps=3, **base))  # type: ignore[arg-type]
    assert (first.samples_used, first.samples_skipped) == (3, 1)
    resumed = run_training(TrainConfig(output=part, max_steps=5, **base))  # type: ignore[arg-type]
    assert resumed.start_step == 3
    assert (resumed.samples_used, resumed.samples_skipped) == (5, 2)
    assert resumed.bad_data == full.bad_data
