"""Retraining: start from the production weights, fine-tune, evaluate, register, promote.

The promotion rule is `should_promote`: a candidate replaces production only when its held-out box
mIoU beats production's, measured on the same data in the same run, by `margin`.
"""

import math
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from autolabel.models.registry import build_model, get_spec
from autolabel.models.weights import sha256_of
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.model_versions import (
    get_production_model,
    promote_model_version,
    register_model_version,
)
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.urls import join_url
from autolabel.storage.weights import ensure_weights
from autolabel.tasks.model_loading import fetch_version_weights
from autolabel.tasks.resources import Resources
from autolabel.tasks.training.evaluate import evaluate_images, iter_sa1b_images
from autolabel.tasks.training.trainer import TrainConfig, run_training

PROMOTION_METRIC = "miou"  # held-out box-prompted mIoU over all objects


class RetrainRequest(BaseModel):
    """One retraining: data, starting point, budget and promotion margin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(description="SA-1B training data: store URL or folder of shards.")
    holdout: str = Field(description="Held-out SA-1B data both models are evaluated on.")
    model: str = Field("efficientvit-sam-l0", description="Variant (registry name).")
    models_url: str | None = Field(
        None, description="Where trained weights are stored (default: <storage>/models)."
    )
    max_steps: int = Field(200, ge=1, description="Optimiser steps.")
    images_per_batch: int = Field(2, ge=1)
    max_masks: int = Field(64, ge=1, description="Masks sampled per image (paper: 64).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per step (paper: 256 images).")
    lr: float | None = Field(None, gt=0, description="Peak LR (default: the paper's).")
    seed: int = 0
    margin: float = Field(0.005, ge=0.0, description="Box mIoU gain needed to promote.")
    max_eval_images: int | None = Field(200, ge=1)
    from_scratch: bool = Field(
        False, description="Start from random weights when there is no production version."
    )


class ModelScore(BaseModel):
    """A model version (or the released weights) and its held-out metrics."""

    name: str
    metrics: dict[str, float]


class RetrainResult(BaseModel):
    """What a retraining run produced and decided."""

    candidate: ModelScore
    production: ModelScore | None
    promoted: bool
    reason: str
    weights_uri: str
    sha256: str
    final_loss: float | None


def should_promote(
    candidate: float, baseline: float, margin: float, *, baseline_name: str = "production"
) -> tuple[bool, str]:
    """Whether a candidate with held-out mIoU `candidate` replaces the model it started from.

    The baseline is the production version, or the released weights (or random initialisation)
    when no version has been promoted yet: a candidate is never promoted just for being first.
    """
    if candidate > baseline + margin:
        return True, (
            f"mIoU {candidate:.4f} beats {baseline_name} ({baseline:.4f}) by more than {margin}"
        )
    return False, (
        f"mIoU {candidate:.4f} does not beat {baseline_name} ({baseline:.4f}) by more than {margin}"
    )


def starting_point(request: RetrainRequest, resources: Resources) -> tuple[str | None, str | None]:
    """(name, local weights path) to start from: the production version, else the released
    weights, else (with `from_scratch`) random initialisation (None, None)."""
    with session_scope(resources.engine) as session:
        production = get_production_model(session, variant=request.model)
    if production is not None:
        return production.name, str(fetch_version_weights(production, resources))
    weights_dir = resources.config.weights_dir
    try:
        path = ensure_weights(get_spec(request.model).weights, weights_dir, download=True)
    except FileNotFoundError:
        if not request.from_scratch:
            raise
        return None, None
    return request.model, str(path)


def train_candidate(
    request: RetrainRequest, start: str | None, work_dir: str, resources: Resources
) -> dict[str, object]:
    """Fine-tune from `start`; returns the weights path, sha256 and loss curve ends."""
    result = run_training(
        TrainConfig(
            data=request.data,
            model_name=request.model,
            output=Path(work_dir),
            max_steps=request.max_steps,
            checkpoint=Path(start) if start else None,
            images_per_batch=request.images_per_batch,
            max_masks=request.max_masks,
            grad_accum=request.grad_accum,
            lr=request.lr,
            seed=request.seed,
            device=resources.device,
            s3=resources.config.s3,
        )
    )
    if result.weights is None or result.sha256 is None:
        raise RuntimeError(f"training stopped at step {result.step} without final weights")
    return {
        "weights": str(result.weights),
        "sha256": result.sha256,
        "first_loss": result.losses[0] if result.losses else None,
        "final_loss": result.losses[-1] if result.losses else None,
        "bad_data": result.bad_data,
    }


def evaluate_weights(
    request: RetrainRequest, weights: str | None, resources: Resources
) -> dict[str, float]:
    """Held-out box mIoU (overall and by size) of `weights` (random init when None), computed
    on the configured device."""
    checkpoint = Path(weights) if weights else None
    model = build_model(request.model, checkpoint, resources.device, verify_sha256=False)
    images = iter_sa1b_images(request.holdout, s3=resources.config.s3)
    metrics = evaluate_images(model, images, clicks=False, max_images=request.max_eval_images)
    # Size buckets without objects are NaN: left out, as JSON (and the registry) has no NaN.
    return {name: value for name, value in metrics.items() if math.isfinite(value)}


def register_candidate(
    request: RetrainRequest,
    trained: dict[str, object],
    metrics: dict[str, float],
    resources: Resources,
) -> tuple[str, str]:
    """Upload the weights to the model store and register them as a candidate version."""
    weights, sha256 = Path(str(trained["weights"])), str(trained["sha256"])
    if sha256_of(weights) != sha256:
        raise StorageConfigError(f"expected {weights} to have sha256 {sha256}, it changed")
    models_url = request.models_url or join_url(resources.config.storage_url, "models")
    name = f"{request.model}-ft-{time.strftime('%Y%m%d-%H%M%S')}-{sha256[:8]}"
    resources.store(models_url).put_file(f"{name}.pt", weights)
    uri = join_url(models_url, f"{name}.pt")
    with session_scope(resources.engine) as session:
        register_model_version(
            session,
            name=name,
            variant=request.model,
            sha256=sha256,
            storage_uri=uri,
            metrics=metrics,
        )
    return name, uri


def promote(name: str, resources: Resources) -> None:
    """Make `name` the production version of its variant (the previous one is archived)."""
    with session_scope(resources.engine) as session:
        promote_model_version(session, name=name)
