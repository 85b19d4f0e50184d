"""Focal + dice (20:1), min-loss over the three outputs, IoU-head MSE, distillation L2."""

import math

import pytest
import torch

from autolabel.models.errors import InvalidInputError
from autolabel.models.training.losses import (
    dice_loss,
    distillation_loss,
    mask_iou,
    multimask_loss,
    sigmoid_focal_loss,
)


def test_focal_loss_at_zero_logits_by_hand() -> None:
    # p = 0.5: ce = ln 2, (1 - p_t)^2 = 0.25, alpha 0.25 for positives and 0.75 for negatives
    logits = torch.zeros(1, 2, 2)
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    expected = (2 * 0.25 + 2 * 0.75) * math.log(2) * 0.25 / 4
    assert sigmoid_focal_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_dice_loss_by_hand() -> None:
    logits = torch.zeros(1, 2, 2)  # p = 0.5 everywhere
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    expected = 1 - (2 * 0.5 + 1) / (2.0 + 1 + 1)
    assert dice_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_only_the_lowest_loss_output_gets_gradient() -> None:
    gt = torch.zeros(1, 8, 8, dtype=torch.bool)
    gt[0, 2:6, 2:6] = True
    good = torch.where(gt, 8.0, -8.0)
    logits = torch.stack([torch.zeros(8, 8), good[0], -good[0]])[None].requires_grad_(True)
    iou = torch.tensor([[0.0, 1.0, 0.0]])
    loss = multimask_loss(logits, iou, gt)
    torch.autograd.backward(loss.total)
    assert logits.grad is not None
    assert logits.grad[0, 0].abs().sum() == 0
    assert logits.grad[0, 2].abs().sum() == 0
    assert logits.grad[0, 1].abs().sum() > 0
    best = 20 * sigmoid_focal_loss(logits[0, 1], gt[0].float()) + dice_loss(
        logits[0, 1], gt[0].float()
    )
    assert loss.mask.item() == pytest.approx(best.item(), rel=1e-6)
    # actual IoUs: output 0 (all logits 0 -> empty prediction) 0, output 1 exact 1, output 2 0
    assert loss.iou.item() == pytest.approx(0.0, abs=1e-7)


def test_iou_head_mse_against_actual_iou() -> None:
    gt = torch.zeros(1, 4, 4, dtype=torch.bool)
    gt[0, :2] = True  # 8 px
    pred = torch.full((1, 3, 4, 4), -5.0)
    pred[0, :, :1] = 5.0  # 4 px inside gt: IoU 0.5 for all outputs
    loss = multimask_loss(pred, torch.tensor([[0.5, 0.0, 1.0]]), gt)
    assert loss.iou.item() == pytest.approx((0 + 0.25 + 0.25) / 3, rel=1e-6)


def test_mask_iou_and_shape_checks() -> None:
    a = torch.tensor([[True, True], [False, False]])
    b = torch.tensor([[True, False], [True, False]])
    assert mask_iou(a, b).item() == pytest.approx(1 / 3)
    assert mask_iou(~(a | True), ~(b | True)).item() == 1.0
    with pytest.raises(InvalidInputError, match="expected targets"):
        multimask_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3), torch.zeros(2, 4, 4).bool())


def test_distillation_loss_is_mse() -> None:
    s, t = torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)
    assert distillation_loss(s * 2, t).item() == pytest.approx(4.0)
    with pytest.raises(InvalidInputError):
        distillation_loss(s, torch.zeros(1, 2, 3, 4))
