"""Training prompts sampled from ground-truth masks: a box or 1-10 foreground points.

Frames: masks are given in the padded encoder frame (S x S pixels); prompts are returned in
SAM's 1024 prompt frame (`coords * 1024 / S`), which is what the prompt encoder expects.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from autolabel.models.efficientvit_sam.sam import PROMPT_FRAME_SIZE
from autolabel.models.errors import InvalidInputError

#: Label of a padding point (SAM's prompt encoder embeds it as "not a point").
PAD_LABEL = -1


@dataclass(frozen=True, slots=True)
class PromptBatch:
    """Prompts for M masks of one image, split by prompt type.

    Attributes:
        box_index: (Mb,) int64 indices of the masks prompted with their box.
        boxes_xyxy: (Mb, 4) float32 xyxy boxes in the 1024 prompt frame.
        point_index: (Mp,) int64 indices of the masks prompted with points.
        point_coords: (Mp, P, 2) float32 xy points in the 1024 prompt frame, P = max points.
        point_labels: (Mp, P) int64: 1 foreground, -1 padding.
    """

    box_index: Tensor
    boxes_xyxy: Tensor
    point_index: Tensor
    point_coords: Tensor
    point_labels: Tensor


def mask_boxes_xyxy(masks_bool_mhw: Tensor) -> Tensor:
    """Tight (M, 4) float32 xyxy boxes of (M, H, W) bool masks (x1, y1 exclusive, pixels).

    Empty masks get the box (0, 0, 0, 0).
    """
    m, h, w = masks_bool_mhw.shape
    if m == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    cols, rows = masks_bool_mhw.any(dim=1), masks_bool_mhw.any(dim=2)
    xs, ys = torch.arange(w), torch.arange(h)
    big_x, big_y = torch.full_like(xs, w), torch.full_like(ys, h)
    x0 = torch.where(cols, xs, big_x).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y0 = torch.where(rows, ys, big_y).amin(dim=1)
    y1 = torch.where(rows, ys, -1).amax(dim=1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(masks_bool_mhw.flatten(1).any(1, keepdim=True), boxes, 0.0)


def sample_prompts(
    masks_bool_mhw: Tensor,
    rng: np.random.Generator,
    *,
    max_points: int = 10,
    box_probability: float = 0.5,
) -> PromptBatch:
    """Sample one prompt per mask, as in the paper: the GT box or 1-`max_points` GT points.

    Args:
        masks_bool_mhw: (M, S, S) bool masks in the padded encoder frame; none may be empty.
        rng: Source of randomness (the only one used, so results are reproducible).
        max_points: Upper bound of the number of foreground points.
        box_probability: Probability of a box prompt.

    Returns:
        The prompts in the 1024 prompt frame; point coordinates are pixel indices (SAM's prompt
        encoder adds the half-pixel shift itself).

    Raises:
        InvalidInputError: a mask is empty or the input is not (M, S, S) bool.
    """
    if masks_bool_mhw.ndim != 3 or masks_bool_mhw.dtype != torch.bool:
        raise InvalidInputError(
            f"expected (M, S, S) bool masks, got {tuple(masks_bool_mhw.shape)} "
            f"{masks_bool_mhw.dtype}"
        )
    areas = masks_bool_mhw.flatten(1).sum(1)
    if bool((areas == 0).any()):
        raise InvalidInputError(f"expected non-empty masks, got areas {areas.tolist()}")
    m, size = masks_bool_mhw.shape[0], masks_bool_mhw.shape[-1]
    scale = PROMPT_FRAME_SIZE / size
    use_box = rng.random(m) < box_probability
    box_index = torch.from_numpy(np.flatnonzero(use_box)).long()
    point_index = torch.from_numpy(np.flatnonzero(~use_box)).long()
    boxes = mask_boxes_xyxy(masks_bool_mhw[box_index]) * scale
    coords = torch.zeros((len(point_index), max_points, 2), dtype=torch.float32)
    labels = torch.full((len(point_index), max_points), PAD_LABEL, dtype=torch.int64)
    for row, i in enumerate(point_index.tolist()):
        ys, xs = torch.nonzero(masks_bool_mhw[i], as_tuple=True)
        count = int(rng.integers(1, max_points + 1))
        picks = torch.from_numpy(rng.choice(len(xs), size=min(count, len(xs)), replace=False))
        n = len(picks)
        coords[row, :n, 0] = xs[picks].float() * scale
        coords[row, :n, 1] = ys[picks].float() * scale
        labels[row, :n] = 1
    return PromptBatch(box_index, boxes, point_index, coords, labels)
