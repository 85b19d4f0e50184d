"""`autolabel train` and `autolabel eval`: fine-tune EfficientViT-SAM and measure it.

`autolabel train` runs as one process, or one process per GPU under torchrun:
`torchrun --nproc_per_node 8 "$(which autolabel)" train --data s3://... ...` (see
docs/training.md). Both commands print JSON results; `eval` also writes them to `--json`. Bad
items (unreadable samples, shards, images) are skipped, never the rest of their source: `train`
lists them under `bad_data`, `eval` under `skipped_items` and on stderr, one line each.
"""

import json
import logging
import math
from pathlib import Path

import typer

from autolabel.flows.errors import FlowError
from autolabel.flows.resources import inference_device, s3_config
from autolabel.flows.settings import load_settings


def train(
    data: str = typer.Option(..., help="SA-1B shards: local folder or s3:// / file:// URL."),
    model: str = typer.Option("efficientvit-sam-l0", help="Registry name of the model."),
    checkpoint: Path | None = typer.Option(None, help="Initial weights (.pt)."),
    max_steps: int = typer.Option(..., help="Optimiser steps in total (a resume continues)."),
    output: Path = typer.Option(..., help="Run folder: checkpoints, metrics.jsonl, model.pt."),
    images_per_batch: int = typer.Option(2, help="Images per micro-batch per process."),
    grad_accum: int = typer.Option(1, help="Micro-batches per step (paper: to batch 256)."),
    lr: float | None = typer.Option(None, help="Peak LR; default 2e-6 (L) / 1e-6 (XL)."),
    max_masks: int = typer.Option(64, help="Masks sampled per image."),
    checkpoint_every: int = typer.Option(100, help="Checkpoint every N steps."),
    num_workers: int = typer.Option(2, help="DataLoader workers per process."),
    seed: int = typer.Option(0, help="Seed of data order, augmentation and prompts."),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    single_weight: float = typer.Option(1.0, help="Loss weight of the single-mask output."),
    freeze_bn: bool | None = typer.Option(
        None, help="Keep BatchNorm statistics; default: yes when --checkpoint is given."
    ),
    teacher: Path | None = typer.Option(None, help="SAM checkpoint: run encoder distillation."),
    teacher_cache: str | None = typer.Option(None, help="Store URL for teacher embeddings."),
) -> None:
    """Fine-tune EfficientViT-SAM on SA-1B-format data (resumes from OUTPUT when possible)."""
    from autolabel.tasks.training.distributed import shutdown_distributed
    from autolabel.tasks.training.train_config import TrainConfig
    from autolabel.tasks.training.trainer import run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = TrainConfig(
        data=data,
        model_name=model,
        output=output,
        max_steps=max_steps,
        checkpoint=checkpoint,
        images_per_batch=images_per_batch,
        grad_accum=grad_accum,
        lr=lr,
        max_masks=max_masks,
        checkpoint_every=checkpoint_every,
        num_workers=num_workers,
        seed=seed,
        device=device,
        single_weight=single_weight,
        freeze_bn=freeze_bn,
        distill_teacher=teacher,
        teacher_cache=teacher_cache,
        s3=s3_config(load_settings()),
    )
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowError(f"cannot create --output {output}: {exc.strerror or exc}") from exc
    try:
        result = run_training(config)
    finally:
        shutdown_distributed()
    summary = {
        "step": result.step,
        "interrupted": result.interrupted,
        "last_loss": result.losses[-1] if result.losses else None,
        "weights": str(result.weights) if result.weights else None,
        "sha256": result.sha256,
        "samples_used": result.samples_used,
        "samples_skipped": result.samples_skipped,
        "bad_data": [{"name": b.name, "reason": b.reason} for b in result.bad_data],
    }
    typer.echo(json.dumps(summary))
    if result.interrupted:
        raise typer.Exit(code=143)


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}


def evaluate(
    data: str = typer.Option(..., help="SA-1B source, or the COCO image folder."),
    model: str = typer.Option("efficientvit-sam-l0", help="Registry name of the model."),
    checkpoint: Path | None = typer.Option(None, help="Weights (.pt); random init when absent."),
    json_path: Path = typer.Option(..., "--json", help="Where to write the metrics JSON."),
    coco_annotations: Path | None = typer.Option(None, help="COCO instances JSON (COCO layout)."),
    detections: Path | None = typer.Option(None, help="COCO results JSON of boxes, for mAP."),
    clicks: bool = typer.Option(True, help="Also run the 1/3/5-click protocol."),
    max_images: int | None = typer.Option(None, help="Evaluate at most this many images."),
    device: str | None = typer.Option(
        None, help="Device, e.g. cpu or cuda (default: AUTOLABEL_MODELS__DEVICE)."
    ),
) -> None:
    """Box mIoU (all/small/medium/large), click mIoU at 1/3/5 clicks, optional COCO mask mAP."""
    from autolabel.tasks.training.evaluate import EvalRequest, evaluate_model

    settings = load_settings()
    report = evaluate_model(
        EvalRequest(
            data=data,
            model=model,
            checkpoint=checkpoint,
            device=inference_device(settings, device),
            coco_annotations=coco_annotations,
            detections=detections,
            clicks=clicks,
            max_images=max_images,
            s3=s3_config(settings),
        )
    )
    for bad in report.skipped:
        typer.echo(f"skipped {bad.name}: {bad.reason}", err=True)
    out: dict[str, object] = {"model": model, "checkpoint": str(checkpoint) if checkpoint else None}
    out.update(_finite(report.metrics))
    out["images"] = report.images_used
    out["skipped"] = report.images_skipped
    out["skipped_items"] = [{"name": b.name, "reason": b.reason} for b in report.skipped]
    try:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2))
    except OSError as exc:
        raise FlowError(f"cannot write --json {json_path}: {exc.strerror or exc}") from exc
    typer.echo(json.dumps(out))
