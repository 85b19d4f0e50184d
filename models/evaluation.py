"""Evaluation of promptable segmentation: box mIoU by object size and the click protocol.

Metrics (paper, section 4): box-prompted mIoU over all objects and for COCO's small (area <
32^2), medium (32^2 to 96^2) and large (>= 96^2) objects, by ground-truth mask area in pixels of the
original image; point-prompted mIoU after 1, 3 and 5 clicks.

Click protocol (SAM, after RITM): the first click is the ground-truth pixel farthest from the
object boundary (largest Euclidean distance transform of the mask, the image border counting as
boundary). Each next click goes to the error region -- false negatives (positive click) or false
positives (negative click) -- whose interior point lies deepest, i.e. RITM's choice of the larger
error region by distance-transform depth; the click is that deepest pixel. Click coordinates are
pixel indices (x = column, y = row) in the original image frame; SAM's prompt encoder adds the
half-pixel shift.

Prompting: boxes use the single-mask output; the first click uses the multimask output with the
highest predicted IoU; later clicks use all clicks so far plus the previous low-resolution logits
as mask input, single-mask output (as SAM's interactive evaluation).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage  # type: ignore[import-untyped]

from autolabel.models.efficientvit_sam.inference import PROMPT_TRANSFORM, decode_prompts
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError
from autolabel.models.transforms import postprocess_masks
from autolabel.models.types import ImageEmbedding

SMALL_MAX_AREA = 32**2
MEDIUM_MAX_AREA = 96**2
CLICK_COUNTS = (1, 3, 5)
BoolMask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Click:
    """One click: pixel column `x`, row `y` (original frame), positive or negative."""

    x: int
    y: int
    positive: bool


def mask_iou(pred: BoolMask, gt: BoolMask) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    if pred.shape != gt.shape:
        raise InvalidInputError(f"expected masks of one shape, got {pred.shape} and {gt.shape}")
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else int(np.count_nonzero(pred & gt)) / union


def size_bucket(area_px: float) -> str:
    """COCO size class of a mask area in pixels: "small", "medium" or "large"."""
    if area_px < SMALL_MAX_AREA:
        return "small"
    return "medium" if area_px < MEDIUM_MAX_AREA else "large"


def summarize_box_miou(ious: Sequence[float], areas_px: Sequence[float]) -> dict[str, float]:
    """`miou`, `miou_small`, `miou_medium`, `miou_large` (NaN when a class is empty) and counts."""
    if len(ious) != len(areas_px):
        raise InvalidInputError(f"expected one area per IoU, got {len(areas_px)} for {len(ious)}")
    out: dict[str, float] = {"miou": float(np.mean(ious)) if ious else float("nan")}
    out["count"] = float(len(ious))
    for bucket in ("small", "medium", "large"):
        sel = [iou for iou, a in zip(ious, areas_px, strict=True) if size_bucket(a) == bucket]
        out[f"miou_{bucket}"] = float(np.mean(sel)) if sel else float("nan")
        out[f"count_{bucket}"] = float(len(sel))
    return out


def deepest_point(region: BoolMask) -> tuple[int, int, float]:
    """(row, col, depth) of the region's pixel farthest from its boundary (image border included).

    Ties go to the first pixel in row-major order. An empty region gives (-1, -1, 0.0).
    """
    if not region.any():
        return -1, -1, 0.0
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    flat = int(np.argmax(depth))
    row, col = divmod(flat, region.shape[1])
    return row, col, float(depth[row, col])


def first_click(gt: BoolMask) -> Click:
    """The positive click farthest from the boundary of the (non-empty) ground-truth mask."""
    row, col, _ = deepest_point(gt)
    if row < 0:
        raise InvalidInputError("expected a non-empty ground-truth mask for the first click")
    return Click(x=col, y=row, positive=True)


def next_click(gt: BoolMask, pred: BoolMask) -> Click | None:
    """The next click given the current prediction; None when the prediction is exact.

    False negatives (`gt & ~pred`) give a positive click, false positives (`pred & ~gt`) a
    negative one; the region whose deepest pixel is farther from its boundary wins (ties go to
    the false negatives, as in RITM).
    """
    if gt.shape != pred.shape:
        raise InvalidInputError(f"expected masks of one shape, got {gt.shape} and {pred.shape}")
    fn_row, fn_col, fn_depth = deepest_point(gt & ~pred)
    fp_row, fp_col, fp_depth = deepest_point(pred & ~gt)
    if fn_depth == 0.0 and fp_depth == 0.0:
        return None
    if fn_depth >= fp_depth:
        return Click(x=fn_col, y=fn_row, positive=True)
    return Click(x=fp_col, y=fp_row, positive=False)


def _to_original(embedding: ImageEmbedding, low_res: torch.Tensor) -> BoolMask:
    up = postprocess_masks(low_res, embedding.prompt_size, embedding.original_size)
    return (up[:, 0] > 0).cpu().numpy()


def box_masks(
    model: EfficientViTSam, embedding: ImageEmbedding, boxes_xyxy_px: npt.NDArray[np.float64]
) -> BoolMask:
    """(N, H, W) bool masks of (N, 4) xyxy pixel boxes (original frame), single-mask output."""
    boxes = PROMPT_TRANSFORM.apply_boxes(boxes_xyxy_px, embedding.original_size)
    low_res, _ = decode_prompts(
        model, embedding, boxes=torch.from_numpy(boxes).float(), multimask_output=False
    )
    return _to_original(embedding, low_res)


def click_ious(
    model: EfficientViTSam,
    embedding: ImageEmbedding,
    gt: BoolMask,
    *,
    max_clicks: int = max(CLICK_COUNTS),
) -> list[float]:
    """IoU with `gt` after 1, 2, ..., `max_clicks` clicks of the protocol (one object).

    Once the prediction is exact, later entries repeat its IoU (1.0).
    """
    clicks = [first_click(gt)]
    ious: list[float] = []
    mask_input: torch.Tensor | None = None
    while len(ious) < max_clicks:
        xy = np.array([[[c.x, c.y] for c in clicks]], dtype=np.float64)
        coords = torch.from_numpy(PROMPT_TRANSFORM.apply_coords(xy, embedding.original_size))
        labels = torch.tensor([[int(c.positive) for c in clicks]])
        low_res, iou_pred = decode_prompts(
            model,
            embedding,
            point_coords=coords.float(),
            point_labels=labels,
            mask_input=mask_input,
            multimask_output=len(clicks) == 1,
        )
        best = int(torch.argmax(iou_pred[0]))
        mask_input = low_res[:, best : best + 1]
        pred = _to_original(embedding, mask_input)[0]
        ious.append(mask_iou(pred, gt))
        click = next_click(gt, pred)
        if click is None:
            ious.extend([ious[-1]] * (max_clicks - len(ious)))
            break
        clicks.append(click)
    return ious


def summarize_clicks(
    per_object: Sequence[Sequence[float]], counts: Sequence[int] = CLICK_COUNTS
) -> Mapping[str, float]:
    """`miou_<k>click` for each k in `counts`: mean over objects of the IoU after k clicks."""
    if not per_object:
        return {f"miou_{k}click": float("nan") for k in counts}
    return {f"miou_{k}click": float(np.mean([ious[k - 1] for ious in per_object])) for k in counts}
