"""Retraining: start from the production weights, fine-tune, evaluate, register, promote.

The promotion rule is `decide_promotion`: no decision on an evaluation that skipped too many items
(`incomplete_evaluation`), else a candidate replaces production only when its held-out box mIoU
beats production's, measured on the same data in the same run, by `margin` (`should_promote`).

Training is resumable across processes: each training has a stable folder in the object store,
`<storage_url>/training/<training_key>/`, mirroring the trainer's run folder (`metrics.jsonl`,
`checkpoints/last.pt`, then `model.pt` and `result.json` when finished). Every checkpoint is
uploaded as the trainer writes it, so a killed run loses at most one checkpoint interval; a rerun
downloads it and resumes; a finished training is reused, not repeated. With several
`processes_per_node` the trainer runs under torchrun in child processes (`torchrun_launch`),
resuming from and uploading to the same folder.
"""

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autolabel.models.registry import create_model, get_spec
from autolabel.models.weight_files import sha256_of
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.model_versions import (
    find_model_version,
    get_production_model,
    promote_model_version,
    register_model_version,
)
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.urls import join_url
from autolabel.storage.weight_download import ensure_weights
from autolabel.tasks.model_loading import fetch_version_weights
from autolabel.tasks.resources import Resources
from autolabel.tasks.training.evaluate import evaluate_images, iter_sa1b_images
from autolabel.tasks.training.torchrun_launch import (
    MAX_PROCESSES_PER_NODE,
    LineLogger,
    train_in_processes,
)
from autolabel.tasks.training.train_config import TrainConfig
from autolabel.tasks.training.trainer import run_training
from autolabel.tasks.training.training_folder import (
    RESULT_NAME,
    TRAINING_PREFIX,
    download_state,
    record_finished,
    reuse_finished,
    upload_state,
)

_log = logging.getLogger(__name__)

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
    checkpoint_every: int = Field(
        50, ge=1, description="Steps between checkpoints uploaded to the store (resume points)."
    )
    images_per_batch: int = Field(2, ge=1)
    max_masks: int = Field(64, ge=1, description="Masks sampled per image (paper: 64).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per step (paper: 256 images).")
    lr: float | None = Field(None, gt=0, description="Peak LR (default: the paper's).")
    seed: int = 0
    margin: float = Field(0.005, ge=0.0, description="Box mIoU gain needed to promote.")
    max_skipped_fraction: float = Field(
        0.05, ge=0, le=1, description="Not promoted when a held-out evaluation skipped more."
    )
    max_eval_images: int | None = Field(200, ge=1)
    from_scratch: bool = Field(
        False, description="Start from random weights when there is no production version."
    )
    processes_per_node: int = Field(
        1,
        json_schema_extra={"minimum": 1, "maximum": MAX_PROCESSES_PER_NODE},
        description=(
            f"Training processes on the flow's node (1..{MAX_PROCESSES_PER_NODE}): 1 trains in "
            "the flow's process; more run the trainer under torchrun (DDP: gloo on CPU, nccl "
            "with one GPU each on CUDA)."
        ),
    )

    @field_validator("processes_per_node")
    @classmethod
    def _processes_in_range(cls, value: int) -> int:
        if not 1 <= value <= MAX_PROCESSES_PER_NODE:
            raise ValueError(
                f"expected processes_per_node from 1 to {MAX_PROCESSES_PER_NODE}, got {value}"
            )
        return value


class ItemCounts(BaseModel):
    """How many items (images, samples) a stage used, and how many it skipped as unreadable."""

    used: int = Field(ge=0, description="Items used.")
    skipped: int = Field(ge=0, description="Bad items skipped (each logged by name).")

    @property
    def skipped_fraction(self) -> float:
        """`skipped / (used + skipped)`; 0.0 when there were no items."""
        total = self.used + self.skipped
        return self.skipped / total if total else 0.0


class Evaluation(BaseModel):
    """One held-out evaluation: finite metrics and the images used and skipped."""

    metrics: dict[str, float]
    items: ItemCounts

    def registry_metrics(self) -> dict[str, float]:
        """The metrics plus `images` (used) and `skipped` counts, as the registry stores them."""
        return {**self.metrics, "images": self.items.used, "skipped": self.items.skipped}


class ModelScore(Evaluation):
    """A model version (or the released weights) and its held-out evaluation."""

    name: str


class RetrainResult(BaseModel):
    """What a retraining run produced and decided."""

    candidate: ModelScore
    production: ModelScore | None
    promoted: bool
    reason: str
    weights_uri: str
    sha256: str
    final_loss: float | None
    training_url: str = Field(
        description="Store folder of the training: checkpoints, metrics.jsonl, model.pt."
    )
    resumed_from_step: int = Field(
        description="Steps found done in the store (0: trained from the start; max_steps: reused)."
    )
    training_data: ItemCounts = Field(description="Training samples used, bad items skipped.")


def incomplete_evaluation(scores: list[ModelScore], max_skipped_fraction: float) -> str | None:
    """Why no promotion can be decided on these evaluations, or None when each one skipped at
    most `max_skipped_fraction` of its items (the first one over it is named)."""
    for score in scores:
        n, fraction = score.items, score.items.skipped_fraction
        if fraction > max_skipped_fraction:
            return (
                f"not deciding: the held-out evaluation of {score.name} skipped {n.skipped} of "
                f"{n.used + n.skipped} items ({fraction:.1%} > {max_skipped_fraction:.1%})"
            )
    return None


def decide_promotion(
    candidate: ModelScore, baseline: ModelScore, request: RetrainRequest
) -> tuple[bool, str]:
    """(promote, one-line reason): `incomplete_evaluation`, then `should_promote` on
    `PROMOTION_METRIC` with `request.margin`."""
    refusal = incomplete_evaluation([candidate, baseline], request.max_skipped_fraction)
    if refusal is not None:
        return False, refusal
    return should_promote(
        candidate.metrics[PROMOTION_METRIC],
        baseline.metrics[PROMOTION_METRIC],
        request.margin,
        baseline_name=baseline.name,
    )


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
    released = get_spec(request.model, family="segmenter").weights
    try:
        if released is None:
            raise FileNotFoundError(f"{request.model} has no released weights")
        path = ensure_weights(released, resources.config.weights_dir, download=True)
    except FileNotFoundError:
        if not request.from_scratch:
            raise
        return None, None
    return request.model, str(path)


def training_key(
    request: RetrainRequest,
    start: tuple[str | None, str | None],
    data_objects: list[tuple[str, int, str]],
) -> str:
    """Stable name of one training: a digest of everything that changes its result.

    Args:
        request: Its data URL, model, max_steps, batch sizes, masks per image, lr, seed and
            (when more than 1) processes_per_node, which sets the world size; holdout, margin
            and `checkpoint_every` (resume is exact) do not.
        start: (name, sha256) of the starting weights; (None, None) for random initialisation.
        data_objects: (key, size, etag) of every object under `request.data`, so that new data
            at the same URL is a new training.
    """
    material = {
        "version": 1,
        "data": request.data,
        "data_objects": sorted(data_objects),
        "model": request.model,
        "start": list(start),
        **request.model_dump(
            include={"max_steps", "images_per_batch", "max_masks", "grad_accum", "lr", "seed"}
        ),
    }
    if request.processes_per_node > 1:  # absent at 1: the keys of earlier trainings stay valid
        material["processes_per_node"] = request.processes_per_node
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return f"{request.model}-{digest[:20]}"


def training_url(
    request: RetrainRequest, start_name: str | None, start: str | None, resources: Resources
) -> str:
    """`<storage_url>/training/<training_key>` of this request and starting point."""
    if not resources.config.storage_url:
        raise StorageConfigError("expected a storage URL for training checkpoints, got none")
    objects = [(o.key, o.size, o.etag) for o in resources.store(request.data).list()]
    sha = sha256_of(Path(start)) if start else None
    key = training_key(request, (start_name, sha), objects)
    return join_url(resources.config.storage_url, f"{TRAINING_PREFIX}/{key}")


def _train_config(
    request: RetrainRequest, start: str | None, work: Path, resources: Resources
) -> TrainConfig:
    return TrainConfig(
        data=request.data,
        model_name=request.model,
        output=work,
        max_steps=request.max_steps,
        checkpoint=Path(start) if start else None,
        images_per_batch=request.images_per_batch,
        max_masks=request.max_masks,
        grad_accum=request.grad_accum,
        lr=request.lr,
        seed=request.seed,
        checkpoint_every=request.checkpoint_every,
        device=resources.device,
        s3=resources.config.s3,
    )


def train_candidate(
    request: RetrainRequest,
    start: tuple[str | None, str | None],
    work_dir: str,
    resources: Resources,
    log: LineLogger | None = None,
) -> dict[str, object]:
    """Fine-tune from `start` (name, local weights path), resuming from the store's checkpoint:
    in this process, or with `request.processes_per_node` > 1 in that many torchrun processes
    (rank 0 uploads the checkpoints; every rank resumes from the one downloaded into `work_dir`).

    Args:
        log: Receives the output lines of the torchrun processes (default: this module's).

    Returns:
        Local `weights` path (in `work_dir`), `sha256`, `step`, `first_loss`, `final_loss`,
        `samples_used`, `samples_skipped`, `bad_data` (name and reason of each), `world_size`,
        `training_url` and `resumed_from_step`.

    Raises:
        TrainingProcessError: the torchrun processes failed (exit code and error line).
    """
    url = training_url(request, start[0], start[1], resources)
    store, work = resources.store(url), Path(work_dir)
    if store.exists(RESULT_NAME):
        return {**reuse_finished(store, work), "training_url": url}
    download_state(store, work)
    config = _train_config(request, start[1], work, resources)
    if request.processes_per_node == 1:
        result = run_training(config, on_checkpoint=lambda _step: upload_state(store, work))
    else:
        processes = request.processes_per_node
        result = train_in_processes(config, log or _log, processes=processes, sync_url=url)
    summary = record_finished(store, work, result)
    return {
        **summary,
        "weights": str(result.weights),
        "training_url": url,
        "resumed_from_step": result.start_step,
    }


def training_counts(trained: Mapping[str, object]) -> ItemCounts:
    """Samples used and skipped of a `train_candidate` result (0 where an older one has none)."""
    counts = {"used": trained.get("samples_used", 0), "skipped": trained.get("samples_skipped", 0)}
    return ItemCounts.model_validate(counts)


def evaluate_weights(
    request: RetrainRequest, weights: str | None, resources: Resources
) -> Evaluation:
    """Held-out box mIoU (overall and by size) of `weights` (random init when None), computed
    on the configured device, with the images used and skipped (each skipped one is logged)."""
    checkpoint = Path(weights) if weights else None
    model = create_model(
        request.model,
        family="segmenter",
        checkpoint_path=checkpoint,
        device=resources.device,
        verify_sha256=False,
    )
    images = iter_sa1b_images(request.holdout, s3=resources.config.s3)
    report = evaluate_images(model, images, clicks=False, max_images=request.max_eval_images)
    # Size buckets without objects are NaN: left out, as JSON (and the registry) has no NaN.
    return Evaluation(
        metrics={k: v for k, v in report.metrics.items() if math.isfinite(v)},
        items=ItemCounts(used=report.images_used, skipped=report.images_skipped),
    )


def register_candidate(
    request: RetrainRequest,
    trained: dict[str, object],
    metrics: dict[str, float],
    resources: Resources,
) -> tuple[str, str]:
    """Upload the weights to the model store and register them as a candidate version.

    Weights already registered for the variant (a rerun of a finished retraining) are not
    registered again: their existing version is returned.
    """
    weights, sha256 = Path(str(trained["weights"])), str(trained["sha256"])
    if sha256_of(weights) != sha256:
        raise StorageConfigError(f"expected {weights} to have sha256 {sha256}, it changed")
    with session_scope(resources.engine) as session:
        known = find_model_version(session, variant=request.model, sha256=sha256)
    if known is not None:
        return known.name, known.storage_uri
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
