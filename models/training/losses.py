"""Losses of the paper's end-to-end stage and of the encoder distillation stage.

Mask loss per predicted mask: `20 * focal + 1 * dice` (paper, sec. 3.2; focal with SAM's
alpha 0.25, gamma 2, averaged over pixels). Of the three multimask outputs only the one with the
lowest mask loss is back-propagated. The IoU head is trained with the MSE between each output's
predicted IoU and its actual IoU with the ground truth (the actual IoU is a target: no gradient).

SAM's decoder also has a fourth, single-mask output, which inference uses for boxes and for
several points. The paper does not train it (its decoder starts from SAM-ViT-H's); so that
fine-tuning improves that output too, `multimask_loss` can add its mask and IoU loss with weight
`single_weight` (0 gives the paper's loss exactly).
"""

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from autolabel.models.errors import InvalidInputError

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


@dataclass(frozen=True, slots=True)
class MaskLoss:
    """Loss terms of a batch of prompts (each a scalar float32 tensor).

    Attributes:
        total: `mask + iou`, what is back-propagated.
        mask: Mean over prompts of the lowest `20 * focal + dice` of the 3 outputs.
        iou: Mean squared error of the IoU head over prompts and outputs.
        count: Number of prompts (masks) averaged over.
    """

    total: Tensor
    mask: Tensor
    iou: Tensor
    count: int


def sigmoid_focal_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-mask focal loss averaged over pixels.

    Args:
        logits: (..., H, W) float mask logits.
        targets: (..., H, W) float 0/1 targets, same shape.

    Returns:
        (...) float loss.
    """
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).flatten(-2).mean(-1)


def dice_loss(logits: Tensor, targets: Tensor, *, smooth: float = 1.0) -> Tensor:
    """Per-mask soft dice loss `1 - (2|p t| + s) / (|p| + |t| + s)` of (..., H, W) inputs."""
    prob = logits.sigmoid().flatten(-2)
    flat = targets.flatten(-2)
    inter = (prob * flat).sum(-1)
    return 1 - (2 * inter + smooth) / (prob.sum(-1) + flat.sum(-1) + smooth)


def mask_iou(pred_bool: Tensor, gt_bool: Tensor) -> Tensor:
    """IoU of (..., H, W) bool masks, (...) float32; two empty masks have IoU 1."""
    inter = (pred_bool & gt_bool).flatten(-2).sum(-1).float()
    union = (pred_bool | gt_bool).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), 1.0)


def _mask_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return FOCAL_WEIGHT * sigmoid_focal_loss(logits, targets) + DICE_WEIGHT * dice_loss(
        logits, targets
    )


def multimask_loss(
    logits_bchw: Tensor,
    iou_pred_bc: Tensor,
    gt_bool_bhw: Tensor,
    *,
    single_logits_bhw: Tensor | None = None,
    single_iou_b: Tensor | None = None,
    single_weight: float = 0.0,
) -> MaskLoss:
    """The paper's loss of B prompts with C outputs each, optionally plus the single output.

    Args:
        logits_bchw: (B, C, H, W) multimask logits, in the same frame and size as the targets.
        iou_pred_bc: (B, C) their IoU predictions.
        gt_bool_bhw: (B, H, W) bool ground-truth masks.
        single_logits_bhw: (B, H, W) logits of the single-mask output, or None.
        single_iou_b: (B,) its IoU predictions (required with `single_logits_bhw`).
        single_weight: Weight of the single output's mask + IoU loss.

    Returns:
        The loss terms, computed in float32.

    Raises:
        InvalidInputError: shapes disagree.
    """
    b, c, h, w = logits_bchw.shape
    if gt_bool_bhw.shape != (b, h, w) or iou_pred_bc.shape != (b, c):
        raise InvalidInputError(
            f"expected targets (B, H, W) = {(b, h, w)} and IoU (B, C) = {(b, c)}, got "
            f"{tuple(gt_bool_bhw.shape)} and {tuple(iou_pred_bc.shape)}"
        )
    logits = logits_bchw.float()
    expanded = gt_bool_bhw[:, None].expand(b, c, h, w)
    mask = _mask_loss(logits, expanded.float()).min(dim=1).values.mean()
    with torch.no_grad():
        actual = mask_iou(logits > 0, expanded)
    iou = F.mse_loss(iou_pred_bc.float(), actual)
    if single_logits_bhw is not None and single_iou_b is not None and single_weight > 0:
        single = single_logits_bhw.float()
        single_mask = _mask_loss(single, gt_bool_bhw.float()).mean()
        with torch.no_grad():
            single_actual = mask_iou(single > 0, gt_bool_bhw)
        single_iou = F.mse_loss(single_iou_b.float(), single_actual)
        mask = mask + single_weight * single_mask
        iou = iou + single_weight * single_iou
    return MaskLoss(total=mask + iou, mask=mask, iou=iou, count=b)


def distillation_loss(student_bchw: Tensor, teacher_bchw: Tensor) -> Tensor:
    """L2 (mean squared error) between student and teacher image embeddings (B, 256, 64, 64)."""
    if student_bchw.shape != teacher_bchw.shape:
        raise InvalidInputError(
            f"expected teacher embeddings of shape {tuple(student_bchw.shape)}, got "
            f"{tuple(teacher_bchw.shape)}"
        )
    return F.mse_loss(student_bchw.float(), teacher_bchw.float())
