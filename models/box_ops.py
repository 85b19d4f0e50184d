"""Box conversions, IoU, NMS and cross-category deduplication in plain torch (no torchvision).

Frames: `cxcywh_norm` is (center x, center y, width, height) divided by the image width and
height, the detector's output frame; `xyxy_px` is (x0, y0, x1, y1) in pixels of the ORIGINAL image,
x to the right and y down, x1/y1 exclusive edges (a box covering the whole W x H image is
(0, 0, W, H)).
"""

from typing import Literal

import numpy as np
import torch

from autolabel.models.errors import InvalidInputError

DuplicatePolicy = Literal["keep_best", "keep_both"]


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InvalidInputError(f"expected {name} of shape (N, 4), got {tuple(boxes.shape)}")


def cxcywh_norm_to_xyxy_px(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Convert normalized center boxes to pixel corner boxes clipped to the image.

    Args:
        boxes: (N, 4) float cxcywh in [0, 1] relative to the image the model saw; the aspect ratio
            of that image equals the original's, so the same fractions apply to the original.
        image_hw: (height, width) of the original image in pixels.

    Returns:
        (N, 4) float32 xyxy in original-image pixels, clipped to [0, W] x [0, H].
    """
    _check_boxes(boxes, "cxcywh boxes")
    height, width = image_hw
    cx, cy, w, h = boxes.float().unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    return clip_xyxy(xyxy * scale, image_hw)


def clip_xyxy(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Clip (N, 4) xyxy pixel boxes to [0, W] x [0, H] of an image of `image_hw` (height, width)."""
    height, width = image_hw
    x = boxes[:, 0::2].clamp(0.0, float(width))
    y = boxes[:, 1::2].clamp(0.0, float(height))
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N,) areas of (N, 4) xyxy boxes; degenerate boxes have area 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes, (N, M); 0 where the union is empty.

    Floating boxes keep their dtype; integer boxes (e.g. pixel boxes of masks) give float32.
    """
    _check_boxes(boxes_a, "boxes_a")
    _check_boxes(boxes_b, "boxes_b")
    a = boxes_a if boxes_a.is_floating_point() else boxes_a.float()
    b = boxes_b if boxes_b.is_floating_point() else boxes_b.float()
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, like torchvision.ops.nms.

    Args:
        boxes: (N, 4) xyxy boxes, any consistent frame, float or integer.
        scores: (N,) scores; ties keep the lower index first.
        iou_threshold: A box is suppressed when its IoU with a kept, higher-scoring box is
            strictly greater than this.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score.
    """
    _check_boxes(boxes, "boxes")
    if scores.shape != boxes.shape[:1]:
        raise InvalidInputError(
            f"expected (N,) scores for {len(boxes)} boxes, got {tuple(scores.shape)}"
        )
    order = torch.sort(scores, descending=True, stable=True).indices
    suppresses = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep: list[int] = []
    for rank in range(len(order)):
        if suppressed[rank]:
            continue
        keep.append(rank)
        suppressed |= suppresses[rank]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each group (e.g. per category); boxes of different groups never suppress.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        groups: (N,) group ids.
        iou_threshold: As in `nms`.

    Returns:
        (K,) int64 indices of the kept boxes, by decreasing score; ties keep the lower index
        first, as torchvision's batched_nms.
    """
    kept = []
    for group in torch.unique(groups):
        members = torch.nonzero(groups == group).flatten()
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    if not kept:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    indices = torch.cat(kept).sort().values
    return indices[torch.sort(scores[indices], descending=True, stable=True).indices]


def cross_category_duplicates(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    category_ids: torch.Tensor,
    iou_threshold: float,
) -> torch.Tensor:
    """Find boxes that duplicate a higher-scoring box of ANOTHER category.

    Boxes are visited by decreasing score; a box whose IoU with an earlier, non-duplicate box of a
    different category is strictly greater than `iou_threshold` is marked as its duplicate.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        category_ids: (N,) int category ids.
        iou_threshold: Overlap above which two boxes are the same object.

    Returns:
        (N,) int64: index of the box each box duplicates, or -1 for the best box of an object.
    """
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = box_iou(boxes, boxes)
    duplicate_of = torch.full((len(order),), -1, dtype=torch.long)
    leaders: list[int] = []
    for index in order:
        for leader in leaders:
            if category_ids[leader] != category_ids[index] and iou[leader, index] > iou_threshold:
                duplicate_of[index] = leader
                break
        else:
            leaders.append(index)
    return duplicate_of
