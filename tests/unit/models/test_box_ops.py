"""Box conversions, IoU, NMS and cross-category duplicates."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autolabel.models.box_ops import (
    batched_nms,
    box_iou,
    cross_category_duplicates,
    cxcywh_norm_to_xyxy_px,
    nms,
)
from autolabel.models.errors import InvalidInputError


def test_cxcywh_to_pixels_uses_width_for_x_and_height_for_y() -> None:
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.75, 0.1, 0.2]])
    out = cxcywh_norm_to_xyxy_px(boxes, (200, 600))  # H=200, W=600
    expected = torch.tensor([[150.0, 50.0, 450.0, 150.0], [120.0, 130.0, 180.0, 170.0]])
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.float32


def test_boxes_are_clipped_to_the_image() -> None:
    out = cxcywh_norm_to_xyxy_px(torch.tensor([[0.0, 1.0, 0.5, 0.5]]), (100, 300))
    torch.testing.assert_close(out, torch.tensor([[0.0, 75.0, 75.0, 100.0]]))


@settings(max_examples=50, deadline=None)
@given(st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.integers(1, 2000), st.integers(1, 2000))
def test_conversion_inverts_to_normalized_center(cx: float, cy: float, h: int, w: int) -> None:
    size = 0.05
    out = cxcywh_norm_to_xyxy_px(torch.tensor([[cx, cy, size, size]]), (h, w))[0].double()
    assert float((out[0] + out[2]) / 2 / w) == pytest.approx(cx, abs=1e-5)
    assert float((out[1] + out[3]) / 2 / h) == pytest.approx(cy, abs=1e-5)


def test_wrong_box_shape_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"\(N, 4\), got \(3,\)"):
        cxcywh_norm_to_xyxy_px(torch.zeros(3), (10, 10))


def test_iou_of_known_boxes() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 0.0, 1.0]]))


def test_nms_suppresses_overlaps_above_threshold_only() -> None:
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [5.0, 0.0, 15.0, 10.0], [50, 50, 60, 60]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(0,1)=9/11=0.82, IoU(0,2)=1/3, IoU(1,2)=6/14=0.43
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.85).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 0.3).tolist() == [3, 0]


def test_batched_nms_never_suppresses_across_groups() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    scores = torch.tensor([0.5, 0.9, 0.7])
    kept = batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5)
    assert kept.tolist() == [1, 2]


def test_cross_category_duplicates_points_at_the_better_box_of_another_category() -> None:
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.5], [0.0, 0.0, 10.0, 9.0], [40, 40, 50, 50]]
    )
    scores = torch.tensor([0.6, 0.9, 0.5, 0.4])
    categories = torch.tensor([0, 1, 1, 0])
    dup = cross_category_duplicates(boxes, scores, categories, 0.8)
    # box 1 (cat 1) leads; box 0 (cat 0) duplicates it; box 2 has box 1's category and box 0
    # is no leader, so box 2 leads on its own (same-category overlap is NMS's job)
    assert dup.tolist() == [1, -1, -1, -1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 50), st.floats(0, 50), st.floats(1, 30), st.floats(1, 30), st.floats(0, 1)
        ),
        min_size=1,
        max_size=25,
    ),
    st.floats(0.1, 0.9),
)
def test_nms_keeps_no_overlapping_pair_and_explains_every_suppression(
    rows: list[tuple[float, float, float, float, float]], threshold: float
) -> None:
    boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _ in rows], dtype=torch.float64)
    scores = torch.tensor([s for *_, s in rows], dtype=torch.float64)
    kept = nms(boxes, scores, threshold).tolist()
    iou = box_iou(boxes, boxes)
    for i, j in itertools.combinations(kept, 2):
        assert iou[i, j] <= threshold
    for index in set(range(len(rows))) - set(kept):
        assert any(iou[k, index] > threshold and scores[k] >= scores[index] for k in kept)


# Integer pixel boxes, as the mask generator passes them (masks_to_boxes_xyxy).


def test_box_iou_hand_made() -> None:
    a = torch.tensor([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = torch.tensor([[5, 0, 15, 10], [20, 20, 30, 30]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 0], [0, 0]]))


BOXES = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]])
SCORES = torch.tensor([0.8, 0.9, 0.7, 0.6])


def test_nms_suppresses_overlaps_above_threshold_in_score_order() -> None:
    # IoU(0, 1) = 81 / 119 = 0.68; IoU(0, 3) = 0.9; IoU(1, 3) = 72 / 118 = 0.61.
    assert nms(BOXES, SCORES, 0.5).tolist() == [1, 2]
    assert nms(BOXES, SCORES, 0.65).tolist() == [1, 2, 3]
    assert nms(BOXES, SCORES, 0.95).tolist() == [1, 0, 2, 3]


def test_nms_suppressed_box_does_not_suppress_others() -> None:
    # 0 suppresses 1; 1 would suppress 2, but 1 is gone, so 2 stays.
    boxes = torch.tensor([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
    scores = torch.tensor([3.0, 2.0, 1.0])
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]


def _reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept: list[int] = []
    for i in order:
        if all(float(box_iou(boxes[i : i + 1], boxes[k : k + 1])) <= thresh for k in kept):
            kept.append(i)
    return kept


def test_nms_matches_naive_greedy_on_random_boxes() -> None:
    gen = torch.Generator().manual_seed(3)
    xy = torch.randint(0, 50, (60, 2), generator=gen)
    wh = torch.randint(1, 30, (60, 2), generator=gen)
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=gen)
    assert nms(boxes, scores, 0.4).tolist() == _reference_nms(boxes, scores, 0.4)


def test_batched_nms_keeps_overlaps_of_different_categories() -> None:
    categories = torch.tensor([0, 1, 0, 1])
    assert batched_nms(BOXES, SCORES, categories, 0.5).tolist() == [1, 0, 2]
    assert batched_nms(BOXES[:0], SCORES[:0], categories[:0], 0.5).tolist() == []


def test_nms_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidInputError, match=r"\(N, 4\)"):
        nms(BOXES[:, :3], SCORES, 0.5)
