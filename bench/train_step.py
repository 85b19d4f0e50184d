"""Training step throughput of EfficientViT-SAM: seconds per optimiser step and images/s.

Runs `train_step` (the paper's loss, AdamW, clipping) on synthetic samples for each model and
masks-per-image setting, after warm-up steps, and prints a table:

    python bench/train_step.py --quick                 # test model, about a minute on 2 CPU cores
    python bench/train_step.py --models efficientvit-sam-l0 --masks 8 64 --json out.json
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.synthetic (the SA-1B sample generator)

from autolabel.models.registry import create_model, get_spec  # noqa: E402
from autolabel.models.training.optim import build_optimizer  # noqa: E402
from autolabel.models.training.step import (  # noqa: E402
    PromptedSample,
    SamTrainingModule,
    bf16_supported,
    freeze_batch_norm_stats,
    train_step,
)
from autolabel.tasks.training.data import StreamConfig, decode_sample  # noqa: E402
from tests.synthetic import synthetic_sample  # noqa: E402


def samples(input_size: int, masks: int, count: int) -> list[PromptedSample]:
    """`count` prepared synthetic samples with up to `masks` masks each (480 x 640 images)."""
    config = StreamConfig(input_size=input_size, max_masks=masks)
    out = []
    for i in range(count * 4):
        raw = synthetic_sample(
            np.random.default_rng(i), i + 1, height=480, width=640, max_shapes=max(masks, 1)
        )
        prepared = decode_sample(raw, config, np.random.default_rng(i))
        if prepared is not None:
            out.append(prepared)
        if len(out) == count:
            return out
    raise RuntimeError("could not make enough synthetic samples")


def measure(
    name: str, masks: int, images: int, steps: int, device: torch.device
) -> dict[str, object]:
    model = create_model(name, family="segmenter", device=device)
    model.train()
    freeze_batch_norm_stats(model)
    module = SamTrainingModule(model)
    optimizer = build_optimizer(model, lr=1e-6)
    batch = samples(get_spec(name, family="segmenter").input_size, masks, images)
    bf16 = bf16_supported(device)
    train_step(module, optimizer, [batch], clip_norm=2.0, bf16=bf16)  # warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = train_step(module, optimizer, [batch], clip_norm=2.0, bf16=bf16)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "model": name,
        "masks_per_image": masks,
        "images_per_step": images,
        "masks_per_step": out.masks,
        "s_per_step": median,
        "images_per_s": images / median,
        "device": str(device),
        "bf16": bf16,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="test model, few steps (~1 min)")
    parser.add_argument("--models", nargs="+", default=["efficientvit-sam-l0"])
    parser.add_argument("--masks", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--images", type=int, default=2, help="images per step")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.models, args.masks, args.images, args.steps = ["efficientvit-sam-test"], [4, 16], 1, 3
    device = torch.device(args.device)
    rows = [measure(m, k, args.images, args.steps, device) for m in args.models for k in args.masks]
    header = f"{'model':<24}{'masks/img':>10}{'imgs/step':>10}{'s/step':>10}{'img/s':>9}"
    lines = [header] + [
        f"{r['model']:<24}{r['masks_per_image']:>10}{r['images_per_step']:>10}"
        f"{r['s_per_step']:>10.3f}{r['images_per_s']:>9.2f}"
        for r in rows
    ]
    sys.stdout.write("\n".join(lines) + f"\n(device {device}, {torch.get_num_threads()} threads)\n")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
