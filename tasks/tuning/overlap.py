"""Overlap of detections with reviewed labels: box and mask IoU, and one image's scores.

Masks are kept as their bounding rectangle only (`CroppedMask`), so a sample of many candidates
per image stays small in memory and an IoU touches only the pixels where two masks can meet.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from autolabel.models.box_ops import box_iou
from autolabel.models.detection import Detections
from autolabel.tasks.tuning.scores import CategoryScores, ImageScores, MatchBy

BoxXyxy = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class CroppedMask:
    """A bool mask stored as its bounding rectangle.

    Attributes:
        top: Row of `crop[0, 0]` in the image, pixels.
        left: Column of `crop[0, 0]` in the image, pixels.
        crop: (h, w) bool, the mask inside its bounding rectangle ((0, 0) when empty).
        area: Pixels set.
    """

    top: int
    left: int
    crop: npt.NDArray[np.bool_]
    area: int

    @classmethod
    def from_mask(cls, mask_hw: npt.NDArray[np.bool_]) -> "CroppedMask":
        """Crop an (H, W) bool mask (image pixels, origin top-left) to its set pixels."""
        rows = np.flatnonzero(mask_hw.any(axis=1))
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), dtype=np.bool_), 0)
        cols = np.flatnonzero(mask_hw.any(axis=0))
        crop = np.ascontiguousarray(mask_hw[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        return cls(int(rows[0]), int(cols[0]), crop, int(np.count_nonzero(crop)))

    def intersection(self, other: "CroppedMask") -> int:
        """Pixels set in both masks."""
        top, left = max(self.top, other.top), max(self.left, other.left)
        bottom = min(self.top + self.crop.shape[0], other.top + other.crop.shape[0])
        right = min(self.left + self.crop.shape[1], other.left + other.crop.shape[1])
        if bottom <= top or right <= left:
            return 0
        mine = self.crop[top - self.top : bottom - self.top, left - self.left : right - self.left]
        theirs = other.crop[
            top - other.top : bottom - other.top, left - other.left : right - other.left
        ]
        return int(np.count_nonzero(mine & theirs))


def mask_ious(
    masks_a: Sequence[CroppedMask], masks_b: Sequence[CroppedMask]
) -> npt.NDArray[np.float32]:
    """(N, M) IoU of every mask of `masks_a` with every mask of `masks_b` (0 when both empty)."""
    out = np.zeros((len(masks_a), len(masks_b)), dtype=np.float32)
    for i, a in enumerate(masks_a):
        for j, b in enumerate(masks_b):
            inter = a.intersection(b)
            union = a.area + b.area - inter
            out[i, j] = inter / union if union else 0.0
    return out


def box_ious(
    boxes_a_xyxy_px: npt.NDArray[np.float32], boxes_b_xyxy_px: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """(N, M) IoU of (N, 4) and (M, 4) xyxy pixel boxes."""
    a = torch.from_numpy(np.asarray(boxes_a_xyxy_px, np.float32).reshape(-1, 4))
    b = torch.from_numpy(np.asarray(boxes_b_xyxy_px, np.float32).reshape(-1, 4))
    return box_iou(a, b).numpy().astype(np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedObject:
    """A reviewed label as matching sees it.

    Attributes:
        category: Category name.
        box_xyxy_px: Box in image pixels.
        mask: Its mask fitted to the image, or None when matching by boxes.
    """

    category: str
    box_xyxy_px: BoxXyxy
    mask: CroppedMask | None = None


def score_image(
    image_id: int,
    detections: Detections,
    masks: Sequence[CroppedMask] | None,
    reviewed: Sequence[ReviewedObject],
    *,
    categories: Mapping[str, str],
) -> ImageScores:
    """One image's candidates scored against its reviewed labels, by category.

    Args:
        image_id: The image's database id.
        detections: Its candidates (at the floor thresholds).
        masks: One mask per detection, or None to match by boxes.
        reviewed: Its reviewed labels (any categories; others are ignored).
        categories: Detected category name -> the category it counts as (e.g. a phrasing under
            comparison -> the category it names); detections of other names are ignored.

    Returns:
        Scores for every category of `categories`' values that has candidates or labels here.
    """
    match_by: MatchBy = "box" if masks is None else "mask"
    named = [categories.get(name) for name in detections.category_names]
    box_scores = detections.box_scores if detections.box_scores is not None else detections.scores
    out: dict[str, CategoryScores] = {}
    for category in dict.fromkeys(categories.values()):
        rows = [i for i, name in enumerate(named) if name == category]
        labels = [r for r in reviewed if r.category == category]
        if not rows and not labels:
            continue
        if match_by == "mask" and masks is not None:
            ious = mask_ious([masks[i] for i in rows], [_mask_of(r) for r in labels])
        else:
            ious = box_ious(
                detections.boxes_xyxy_px[rows],
                np.array([r.box_xyxy_px for r in labels], np.float32),
            )
        out[category] = CategoryScores(
            box_scores=[float(box_scores[i]) for i in rows],
            text_scores=[float(detections.scores[i]) for i in rows],
            ious=ious.reshape(len(rows), len(labels)).tolist(),
            labels=len(labels),
        )
    return ImageScores(image_id=image_id, categories=out)


def _mask_of(label: ReviewedObject) -> CroppedMask:
    if label.mask is None:
        raise ValueError(f"expected a mask for the reviewed {label.category!r} label, got none")
    return label.mask
