"""Forward of a batch of training images with their prompts, and one optimiser step.

`SamTrainingModule` wraps `EfficientViTSam` so that the whole prompted forward goes through
`nn.Module.__call__` (which `DistributedDataParallel` needs to synchronise gradients).
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from autolabel.models.efficientvit_sam.sam import EfficientViTSam, predict_masks_shared_image
from autolabel.models.training.augment import TrainSample
from autolabel.models.training.losses import MaskLoss, distillation_loss, multimask_loss
from autolabel.models.training.prompt_sampling import PromptBatch


@dataclass(frozen=True, slots=True)
class PromptedSample:
    """A prepared image, its masks and one sampled prompt per mask."""

    sample: TrainSample
    prompts: PromptBatch


@dataclass(frozen=True, slots=True)
class StepResult:
    """Metrics of one optimiser step (Python floats, averaged over this process's micro-batches).

    Attributes:
        loss: Mean total loss (mask + IoU).
        mask_loss: Mean `20 * focal + dice` of the chosen outputs.
        iou_loss: Mean IoU-head MSE.
        grad_norm: Total gradient norm before clipping.
        masks: Number of masks (prompts; images when distilling) in the step on this process.
    """

    loss: float
    mask_loss: float
    iou_loss: float
    grad_norm: float
    masks: int


def freeze_batch_norm_stats(model: nn.Module) -> None:
    """Put BatchNorm layers in eval mode (running statistics), keeping their affine trainable.

    With a few images per process, batch statistics are noisy and would differ between data
    parallel processes; fine-tuning from released weights keeps the running statistics.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class SamTrainingModule(nn.Module):
    """`EfficientViTSam` in its training forward: encode images, decode every prompt.

    Args:
        model: The model to train (its parameters are this module's parameters).
    """

    def __init__(self, model: EfficientViTSam) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: Tensor, prompts: Sequence[PromptBatch]
    ) -> list[tuple[Tensor, Tensor]]:
        """Mask logits and IoU predictions of every prompt, all four decoder outputs.

        Args:
            images: (N, 3, S, S) float encoder inputs.
            prompts: N prompt batches (1024 prompt frame).

        Returns:
            Per image: logits (M, 4, S, S) upsampled bilinearly from 256 x 256, and IoU
            predictions (M, 4); output 0 is the single-mask output, 1-3 the multimask outputs;
            prompts ordered box prompts first, then point prompts.
        """
        size = images.shape[-1]
        embeddings = self.model(images)
        out = []
        for i, batch in enumerate(prompts):
            emb = embeddings[i : i + 1]
            parts = []
            if len(batch.box_index):
                parts.append(self._decode(emb, None, batch.boxes_xyxy.to(emb.device)))
            if len(batch.point_index):
                points = (batch.point_coords.to(emb.device), batch.point_labels.to(emb.device))
                parts.append(self._decode(emb, points, None))
            logits = torch.cat([p[0] for p in parts])
            iou = torch.cat([p[1] for p in parts])
            logits = F.interpolate(logits, (size, size), mode="bilinear", align_corners=False)
            out.append((logits, iou))
        return out

    def _decode(
        self, emb: Tensor, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        encoder = self.model.prompt_encoder
        sparse, dense = encoder(points=points, boxes=boxes, masks=None)
        return predict_masks_shared_image(
            self.model.mask_decoder, emb + dense[:1], encoder.get_dense_pe(), sparse
        )


def micro_batch_loss(
    module: nn.Module, batch: Sequence[PromptedSample], *, single_weight: float = 0.0
) -> MaskLoss:
    """The loss over all masks of the images in `batch` (weighted per mask).

    Args:
        module: `SamTrainingModule`, possibly DDP-wrapped.
        batch: Prepared samples with prompts.
        single_weight: Weight of the single-mask output's loss (0: the paper's loss).
    """
    device = next(module.parameters()).device
    images = torch.stack([item.sample.image for item in batch]).to(device)
    outputs = module(images, [item.prompts for item in batch])
    logits = torch.cat([lg for lg, _ in outputs])
    ious = torch.cat([iou for _, iou in outputs])
    targets = torch.cat(
        [
            item.sample.masks[torch.cat([item.prompts.box_index, item.prompts.point_index])]
            for item in batch
        ]
    ).to(device)
    return multimask_loss(
        logits[:, 1:],
        ious[:, 1:],
        targets,
        single_logits_bhw=logits[:, 0],
        single_iou_b=ious[:, 0],
        single_weight=single_weight,
    )


def autocast_context(
    device: torch.device, enabled: bool
) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on `device` when `enabled`, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is worthwhile: CUDA devices with native bf16 (not CPU)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def _no_sync(module: nn.Module, last: bool) -> contextlib.AbstractContextManager[None]:
    no_sync = getattr(module, "no_sync", None)
    return contextlib.nullcontext() if last or no_sync is None else no_sync()


def train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[Sequence[PromptedSample]],
    *,
    clip_norm: float,
    bf16: bool = False,
    single_weight: float = 0.0,
) -> StepResult:
    """One optimiser step over `micro_batches` with gradient accumulation.

    Each micro-batch's loss is divided by the number of micro-batches, so the step sees the mean
    loss; under `DistributedDataParallel` gradients are synchronised only on the last one
    (`no_sync` before) and averaged over processes. Gradients are clipped to `clip_norm`.

    Args:
        module: `SamTrainingModule`, possibly wrapped in `DistributedDataParallel`.
        optimizer: The optimizer of `module`'s parameters.
        micro_batches: Non-empty list of non-empty micro-batches.
        clip_norm: Max total gradient L2 norm.
        bf16: Run the forward under bf16 autocast.
        single_weight: Weight of the single-mask output's loss (0: the paper's loss).
    """
    device = next(module.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(3, dtype=torch.float64)
    masks = 0
    for i, batch in enumerate(micro_batches):
        with _no_sync(module, i == len(micro_batches) - 1), autocast_context(device, bf16):
            loss = micro_batch_loss(module, batch, single_weight=single_weight)
            torch.autograd.backward(loss.total / len(micro_batches))
        totals += torch.tensor([loss.total.item(), loss.mask.item(), loss.iou.item()])
        masks += loss.count
    params = [p for p in module.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()
    mean = (totals / len(micro_batches)).tolist()
    return StepResult(mean[0], mean[1], mean[2], float(grad_norm), masks)


def iter_chunks(items: Sequence[PromptedSample], size: int) -> Iterator[list[PromptedSample]]:
    """Split `items` into consecutive chunks of `size` (the last may be shorter)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class EncoderDistillModule(nn.Module):
    """The image encoder alone, for the distillation stage (prompt encoder/decoder frozen).

    Args:
        model: The student; its prompt encoder and mask decoder get `requires_grad=False`.
    """

    def __init__(self, model: EfficientViTSam) -> None:
        super().__init__()
        self.model = model
        for part in (model.prompt_encoder, model.mask_decoder):
            for param in part.parameters():
                param.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        """(N, 3, S, S) encoder inputs -> (N, 256, 64, 64) embeddings."""
        out: Tensor = self.model(images)
        return out


def distill_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[Tensor, Tensor]],
    *,
    clip_norm: float,
    bf16: bool = False,
) -> StepResult:
    """One optimiser step of L2 distillation with gradient accumulation.

    Args:
        module: `EncoderDistillModule`, possibly DDP-wrapped.
        optimizer: Over the encoder's parameters.
        micro_batches: (images (N, 3, S, S), teacher embeddings (N, 256, 64, 64)) pairs.
        clip_norm: Max total gradient L2 norm.
        bf16: Run the student under bf16 autocast.
    """
    device = next(module.parameters()).device
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for i, (images, targets) in enumerate(micro_batches):
        with _no_sync(module, i == len(micro_batches) - 1), autocast_context(device, bf16):
            loss = distillation_loss(module(images.to(device)), targets.to(device))
            torch.autograd.backward(loss / len(micro_batches))
        total += loss.item()
    params = [p for p in module.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()
    mean = total / len(micro_batches)
    count = sum(int(images.shape[0]) for images, _ in micro_batches)
    return StepResult(mean, 0.0, 0.0, float(grad_norm), count)
