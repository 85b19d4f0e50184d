"""Overlap of detections with reviewed labels: box and mask IoU, and one image's scores.

Masks are kept as compressed RLEs of the image's size, so a sample of many candidates per image
stays small in memory; mask IoU is pycocotools' on the runs (`autolabel.storage.rle.rle_ious`,
as the quality report's), with no decoding.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from autolabel.models.box_ops import box_iou
from autolabel.models.detection import Detections
from autolabel.storage.rle import Rle, rle_ious
from autolabel.tasks.tuning.scores import CategoryScores, ImageScores, MatchBy

BoxXyxy = tuple[float, float, float, float]


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
        mask: Its mask fitted to the image (compressed RLE), or None when matching by boxes.
    """

    category: str
    box_xyxy_px: BoxXyxy
    mask: Rle | None = None


def score_image(
    image_id: int,
    detections: Detections,
    masks: Sequence[Rle] | None,
    reviewed: Sequence[ReviewedObject],
    *,
    categories: Mapping[str, str],
) -> ImageScores:
    """One image's candidates scored against its reviewed labels, by category.

    Args:
        image_id: The image's database id.
        detections: Its candidates (at the floor thresholds).
        masks: One mask per detection (compressed RLE of the image's size), or None to match by
            boxes.
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
        ious: npt.NDArray[np.floating[Any]]
        if match_by == "mask" and masks is not None:
            ious = rle_ious([masks[i] for i in rows], [_mask_of(r) for r in labels])
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


def _mask_of(label: ReviewedObject) -> Rle:
    if label.mask is None:
        raise ValueError(f"expected a mask for the reviewed {label.category!r} label, got none")
    return label.mask
