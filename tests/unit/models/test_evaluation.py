"""Evaluation metrics and the click protocol, against hand-computed cases."""

import math
from typing import Any

import numpy as np
import pytest
import torch

from autolabel.models.evaluation import (
    Click,
    box_masks,
    click_ious,
    deepest_point,
    first_click,
    mask_iou,
    next_click,
    size_bucket,
    summarize_box_miou,
    summarize_clicks,
)
from autolabel.models.types import ImageEmbedding


def _mask(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """Bool mask with the given (row0, row1, col0, col1) half-open rectangles set."""
    m = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def test_mask_iou_by_hand() -> None:
    a = _mask((4, 4), (0, 2, 0, 2))  # 4 px
    b = _mask((4, 4), (1, 3, 1, 3))  # 4 px, 1 shared
    assert mask_iou(a, b) == pytest.approx(1 / 7)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(~(a | True), ~(a | True)) == 1.0


def test_size_buckets_use_coco_area_ranges() -> None:
    assert size_bucket(32**2 - 1) == "small"
    assert size_bucket(32**2) == "medium"
    assert size_bucket(96**2 - 1) == "medium"
    assert size_bucket(96**2) == "large"
    out = summarize_box_miou([0.5, 0.7, 0.9, 0.1], [100, 2000, 10000, 50])
    assert out["miou"] == pytest.approx(0.55)
    assert out["miou_small"] == pytest.approx(0.3)
    assert out["miou_medium"] == pytest.approx(0.7)
    assert out["miou_large"] == pytest.approx(0.9)
    assert out["count_small"] == 2
    assert math.isnan(summarize_box_miou([0.5], [10])["miou_large"])


def test_first_click_is_farthest_from_the_boundary() -> None:
    # 5 x 5 square in a 7 x 7 image: its centre is 3 px from the background
    assert deepest_point(_mask((7, 7), (1, 6, 1, 6))) == (3, 3, 3.0)
    # 3 x 7 bar (rows 2-4, cols 1-7): depth 2 along row 3 for cols 2-6; first in row order
    assert first_click(_mask((8, 9), (2, 5, 1, 8))) == Click(x=2, y=3, positive=True)
    # the image border counts as boundary: a full image's deepest pixel is its centre
    assert deepest_point(np.ones((5, 5), dtype=bool))[:2] == (2, 2)


def test_next_click_goes_to_the_false_negatives() -> None:
    gt = _mask((10, 10), (0, 6, 0, 6))
    pred = _mask((10, 10), (0, 6, 0, 3))
    # FN = rows 0-5, cols 3-5; depth 2 first reached at row 1 (border above, pred at col 2)
    assert next_click(gt, pred) == Click(x=4, y=1, positive=True)


def test_next_click_goes_to_the_larger_false_positive_region() -> None:
    gt = _mask((12, 12), (0, 2, 0, 2), (10, 12, 10, 12))
    pred = _mask((12, 12), (0, 9, 0, 9), (10, 12, 10, 11))
    # FN: one column (depth 1); FP: 9 x 9 L shape minus gt (depth up to 4) -> negative click
    click = next_click(gt, pred)
    assert click is not None
    assert not click.positive
    assert pred[click.y, click.x]
    assert not gt[click.y, click.x]
    assert (click.y, click.x) == (4, 4)
    assert next_click(gt, gt) is None


class _SquareModel:
    """Fake decoder: a 3 x 3 square of +10 logits around each positive click (256 frame),
    -10 around negative clicks, a filled box for box prompts."""

    def decode(
        self, image_embedding: Any, *, points: Any, boxes: Any, mask_input: Any,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        n = len(points[0]) if points is not None else len(boxes)
        c = 3 if multimask_output else 1
        logits = torch.full((n, c, 256, 256), -10.0)
        if points is not None:
            for b in range(n):
                for (x, y), label in zip(points[0][b].tolist(), points[1][b].tolist(), strict=True):
                    cx, cy = round(x / 4), round(y / 4)
                    logits[b, :, cy - 1 : cy + 2, cx - 1 : cx + 2] = 10.0 if label == 1 else -10.0
        else:
            for b, (x0, y0, x1, y1) in enumerate((boxes / 4).round().long().tolist()):
                logits[b, :, y0:y1, x0:x1] = 10.0
        return logits, torch.linspace(1.0, 0.5, c).expand(n, c)


def _embedding() -> ImageEmbedding:
    return ImageEmbedding(
        embedding=torch.zeros(1, 256, 64, 64), original_size=(256, 256), prompt_size=(1024, 1024)
    )


def test_click_protocol_sequence_by_hand() -> None:
    gt = _mask((256, 256), (10, 13, 10, 13), (30, 33, 30, 33))
    # click 1 at (11, 11) -> square A: IoU 9/18; click 2 at the centre of B -> exact
    ious = click_ious(_SquareModel(), _embedding(), gt, max_clicks=5)  # type: ignore[arg-type]
    assert ious == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
    assert summarize_clicks([ious, [0.0, 0.2, 0.4, 0.6, 0.8]]) == pytest.approx(
        {"miou_1click": 0.25, "miou_3click": 0.7, "miou_5click": 0.9}
    )


def test_box_masks_in_the_original_frame() -> None:
    boxes = np.array([[10.0, 10.0, 13.0, 13.0], [30.0, 20.0, 40.0, 22.0]])
    masks = box_masks(_SquareModel(), _embedding(), boxes)  # type: ignore[arg-type]
    assert masks.shape == (2, 256, 256)
    assert np.array_equal(masks[0], _mask((256, 256), (10, 13, 10, 13)))
    assert np.array_equal(masks[1], _mask((256, 256), (20, 22, 30, 40)))
