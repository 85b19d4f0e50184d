"""A short fine-tune on synthetic shards lowers the loss and raises held-out box mIoU.

Both cases are `slow`: the tiny test model's case runs in the default suite end to end through the
retraining flow (tests/integration/flows/test_retrain_flow.py checks the same loss drop and mIoU
gain on the same data), and the L0 case runs the real EfficientViT-SAM-L0 architecture at 512 px.
No released weights can be downloaded here, so both start from a fixed random initialisation
saved as the starting checkpoint, and train as from scratch: BatchNorm statistics update
(`freeze_bn=False`; with frozen random-init statistics the decoder stays on the all-background
plateau for much longer). The held-out shards use another
seed than the training shards.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

from autolabel.models.registry import create_model
from autolabel.models.training.trained_weights import save_trained_weights
from autolabel.tasks.training.evaluate import evaluate_images, iter_sa1b_images
from autolabel.tasks.training.train_config import TrainConfig
from autolabel.tasks.training.trainer import run_training
from tests.synthetic import TRAINABLE_SHAPES as SHAPES
from tests.synthetic import write_synthetic_shards


def finetune(model_name: str, tmp: Path, *, steps: int, lr: float) -> dict[str, object]:
    """Train from a fixed init; return losses and held-out box mIoU before and after."""
    write_synthetic_shards(tmp / "train", shards=2, images_per_shard=4, seed=0, **SHAPES)
    write_synthetic_shards(tmp / "val", shards=1, images_per_shard=4, seed=99, **SHAPES)
    torch.manual_seed(0)
    start = create_model(model_name)
    init = tmp / "init.pt"
    save_trained_weights(start, model_name, {"init": "seed 0"}, init)
    before = evaluate_images(start, iter_sa1b_images(str(tmp / "val")), clicks=False)
    result = run_training(
        TrainConfig(
            data=str(tmp / "train"), model_name=model_name, checkpoint=init, output=tmp / "run",
            max_steps=steps, lr=lr, images_per_batch=1, max_masks=1, checkpoint_every=steps,
            freeze_bn=False,
        )
    )  # fmt: skip
    assert result.weights is not None
    trained = create_model(model_name, checkpoint_path=result.weights)
    after = evaluate_images(trained, iter_sa1b_images(str(tmp / "val")), clicks=False)
    return {
        "model": model_name, "steps": steps, "lr": lr, "losses": result.losses,
        "miou_before": before.metrics["miou"], "miou_after": after.metrics["miou"],
    }  # fmt: skip


def _check(report: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(report) + "\n")
    losses = report["losses"]
    assert isinstance(losses, list)
    k = max(1, len(losses) // 5)
    assert sum(losses[-k:]) / k < 0.8 * sum(losses[:k]) / k
    assert float(report["miou_after"]) > float(report["miou_before"]) + 0.05  # type: ignore[arg-type]


@pytest.mark.slow
def test_short_finetune_of_the_test_model(tmp_path: Path) -> None:
    _check(finetune("efficientvit-sam-test", tmp_path, steps=120, lr=1e-3))


@pytest.mark.slow
def test_short_finetune_of_l0(tmp_path: Path) -> None:
    _check(finetune("efficientvit-sam-l0", tmp_path, steps=120, lr=1e-3))
