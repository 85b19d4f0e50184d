"""What a training run is asked to do (`TrainConfig`) and what it did (`TrainResult`)."""

from dataclasses import dataclass, field
from pathlib import Path

from autolabel.models.training.distill import SAM_VIT_H, VitConfig
from autolabel.models.training.optim import GRAD_CLIP_NORM, WEIGHT_DECAY
from autolabel.storage.config import S3Config
from autolabel.storage.sa1b import BadSample


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """One training run (the paper's recipe by default; see docs/training.md).

    Attributes:
        data: SA-1B source: local folder or store URL of tar shards (or a folder of pairs).
        model_name: Registry name, e.g. "efficientvit-sam-l0".
        output: Run folder: checkpoints/, metrics.jsonl, model.pt.
        max_steps: Optimiser steps to run in total (including steps before a resume).
        checkpoint: Initial weights (released or retrained); random init when None.
        images_per_batch: Images per micro-batch per process.
        grad_accum: Micro-batches per optimiser step; the effective batch is
            `images_per_batch * grad_accum * world_size` (256 in the paper).
        lr: Peak learning rate; None: the paper's (2e-6 L, 1e-6 XL).
        schedule_steps: Length of the cosine decay to 0; None: `max_steps`.
        warmup_steps: Linear warm-up steps (0 in the paper).
        weight_decay: AdamW weight decay of non-norm, non-bias parameters.
        clip_norm: Gradient clipping max norm.
        max_masks: Masks per image (64 in the paper).
        seed: Seed of data order, augmentation, prompts and initial RNG states.
        num_workers: DataLoader workers per process (resume needs the same number).
        checkpoint_every: Save a resumable checkpoint every this many steps.
        device: "cpu", "cuda" (each rank uses cuda:LOCAL_RANK) or "auto".
        bf16: bf16 autocast; None: on where the device supports it (CUDA with bf16).
        resume: Resume from `<output>/checkpoints/last.pt` when it exists.
        single_weight: Weight of the loss of SAM's single-mask output (used at inference for
            boxes); 0 trains only the three multimask outputs, exactly the paper's loss.
        distill_teacher: SAM checkpoint (e.g. sam_vit_h_4b8939.pth): run the encoder
            distillation stage (L2 to the teacher's embedding) instead of end-to-end training.
        teacher_cache: Store URL or folder of cached teacher embeddings; None:
            `<output>/teacher-cache`.
        teacher_config: Teacher architecture (SAM-ViT-H; smaller ones for tests).
        freeze_bn: Keep BatchNorm running statistics fixed (right when fine-tuning trained
            weights); False updates them per batch (training from scratch). None: freeze when
            `checkpoint` is given.
        s3: S3 client settings for `s3://` data and teacher caches (endpoint, region, ...).
    """

    data: str
    model_name: str
    output: Path
    max_steps: int
    checkpoint: Path | None = None
    images_per_batch: int = 2
    grad_accum: int = 1
    lr: float | None = None
    schedule_steps: int | None = None
    warmup_steps: int = 0
    weight_decay: float = WEIGHT_DECAY
    clip_norm: float = GRAD_CLIP_NORM
    max_masks: int = 64
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 100
    device: str = "auto"
    bf16: bool | None = None
    resume: bool = True
    single_weight: float = 1.0
    distill_teacher: Path | None = None
    teacher_cache: str | None = None
    teacher_config: VitConfig = SAM_VIT_H
    freeze_bn: bool | None = None
    s3: S3Config | None = None


@dataclass(slots=True)
class TrainResult:
    """What a run (or this part of it) did.

    Attributes:
        step: Optimiser steps done in total.
        start_step: Steps already done when this process started (resumed from a checkpoint).
        losses: Mean loss (over ranks) of each step this process ran, in order.
        interrupted: Stopped by SIGTERM after checkpointing.
        weights: Final weights file (rank 0, when finished), and its sha256.
        samples_used: Samples taken into optimiser steps, over all ranks and over every process
            of the run (resumed runs included); a sample read in two epochs counts twice.
        samples_skipped: Bad items met and skipped, counted the same way.
        bad_data: Each bad item (unit or sample) once, by name with the reason, first met first.
        teacher_hits, teacher_misses: Teacher embeddings read from the cache / computed.
        world_size: Processes the run trained in (ranks, over all nodes).
    """

    step: int
    start_step: int = 0
    losses: list[float] = field(default_factory=list)
    interrupted: bool = False
    weights: Path | None = None
    sha256: str | None = None
    samples_used: int = 0
    samples_skipped: int = 0
    bad_data: list[BadSample] = field(default_factory=list)
    teacher_hits: int = 0
    teacher_misses: int = 0
    world_size: int = 1
