"""Encoder distillation: L2 to a (tiny) SAM ViT teacher, embeddings cached and reused."""

from pathlib import Path

import torch

from autolabel.models.registry import create_model
from autolabel.models.training.distill import VitConfig, build_teacher_encoder
from autolabel.tasks.training.train_config import TrainConfig
from autolabel.tasks.training.trainer import run_training

TINY_TEACHER = VitConfig(embed_dim=32, depth=1, num_heads=2, global_attn_indexes=())


def test_distillation_trains_the_encoder_and_reuses_cached_teacher_embeddings(
    shards: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    teacher = build_teacher_encoder(TINY_TEACHER)
    ckpt = tmp_path / "sam_tiny.pth"
    torch.save({f"image_encoder.{k}": v for k, v in teacher.state_dict().items()}, ckpt)
    cache = tmp_path / "cache"
    fields = {
        "data": str(shards), "model_name": "efficientvit-sam-test", "max_steps": 2,
        "images_per_batch": 2, "lr": 1e-3, "distill_teacher": ckpt,
        "teacher_cache": str(cache), "teacher_config": TINY_TEACHER,
    }  # fmt: skip
    first = run_training(TrainConfig(output=tmp_path / "a", **fields))  # type: ignore[arg-type]
    assert first.teacher_misses == 4
    assert first.teacher_hits == 0
    files = sorted(cache.rglob("*.pt"))
    assert len(files) == 4
    checksum = files[0].parent.name
    assert all(f.parent.name == checksum for f in files)
    assert len(first.losses) == 2
    assert all(loss > 0 for loss in first.losses)

    second = run_training(TrainConfig(output=tmp_path / "b", **fields))  # type: ignore[arg-type]
    assert second.teacher_hits == 4
    assert second.teacher_misses == 0
    assert second.losses == first.losses  # cached targets equal the computed ones

    torch.manual_seed(0)  # the trainer seeds its random init the same way (seed 0, rank 0)
    start = create_model("efficientvit-sam-test")
    assert first.weights is not None
    trained = create_model("efficientvit-sam-test", checkpoint_path=first.weights)
    before, after = start.state_dict(), trained.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("mask_decoder."))
    assert any(
        not torch.equal(before[k], after[k]) for k in before if k.startswith("image_encoder.")
    )
