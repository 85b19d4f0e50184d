"""Tests of the mask-generation building blocks on hand-made masks, boxes and logits."""

import importlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from autolabel.models import mask_ops
from autolabel.models.errors import InvalidInputError

# segment-anything's own helpers as the reference. Its package __init__ imports torchvision;
# sam_modules registers the bare package first so that utils.amg (pure numpy/torch) imports.
importlib.import_module("autolabel.models.efficientvit_sam.sam_modules")
sam_amg = importlib.import_module("segment_anything.utils.amg")


def test_point_grid_is_cell_centres_row_major() -> None:
    grid = mask_ops.build_point_grid(2)
    np.testing.assert_allclose(grid, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


@pytest.mark.parametrize("n", [1, 3, 16, 32])
def test_point_grid_matches_segment_anything(n: int) -> None:
    np.testing.assert_allclose(mask_ops.build_point_grid(n), sam_amg.build_point_grid(n))


def test_layer_point_grids_downscale_per_layer() -> None:
    grids = mask_ops.build_layer_point_grids(16, 2, 2)
    assert [len(g) for g in grids] == [256, 64, 16]


def test_point_grid_rejects_zero() -> None:
    with pytest.raises(InvalidInputError, match="points_per_side"):
        mask_ops.build_point_grid(0)


@pytest.mark.parametrize(("hw", "layers", "ratio"), [((100, 150), 1, 0.34), ((77, 64), 2, 0.2)])
def test_crop_boxes_match_segment_anything(hw: tuple[int, int], layers: int, ratio: float) -> None:
    boxes, layer_ids = mask_ops.generate_crop_boxes(hw, layers, ratio)
    ref_boxes, ref_layers = sam_amg.generate_crop_boxes(hw, layers, ratio)
    assert [list(b) for b in boxes] == ref_boxes
    assert layer_ids == ref_layers
    assert boxes[0] == (0, 0, hw[1], hw[0])


def test_stability_score_of_hand_made_logits() -> None:
    logits = torch.full((1, 10, 10), -5.0)
    logits[0, :2, :] = 2.0  # 20 pixels above threshold + offset
    logits[0, 2:5, :] = 0.5  # 30 more pixels above threshold - offset only
    score = mask_ops.stability_score(logits, mask_threshold=0.0, offset=1.0)
    assert score.tolist() == pytest.approx([20 / 50])


def test_stability_score_empty_mask_is_zero_and_crisp_mask_is_one() -> None:
    logits = torch.full((2, 8, 8), -5.0)
    logits[1, 2:4, 2:4] = 5.0
    assert mask_ops.stability_score(logits, 0.0, 1.0).tolist() == [0.0, 1.0]


def test_stability_score_matches_segment_anything() -> None:
    logits = torch.randn(6, 32, 40, generator=torch.Generator().manual_seed(0)) * 3
    ours = mask_ops.stability_score(logits, 0.0, 1.0)
    torch.testing.assert_close(ours, sam_amg.calculate_stability_score(logits, 0.0, 1.0).float())


def test_boxes_of_hand_made_masks_use_exclusive_edges() -> None:
    masks = torch.zeros((3, 10, 12), dtype=torch.bool)
    masks[0, 2:5, 3:6] = True
    masks[1, 9, 11] = True
    boxes = mask_ops.masks_to_boxes_xyxy(masks)
    assert boxes.tolist() == [[3, 2, 6, 5], [11, 9, 12, 10], [0, 0, 0, 0]]


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9))))
def test_boxes_equal_pycocotools_bbox(masks: np.ndarray) -> None:
    boxes = mask_ops.masks_to_boxes_xyxy(torch.from_numpy(masks))
    rles = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    coco_xywh = coco_mask.toBbox(rles).reshape(-1, 4)
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    np.testing.assert_array_equal(xywh.numpy(), coco_xywh)


def test_crop_edge_filter_ignores_image_edges() -> None:
    crop = (0, 0, 50, 50)  # top-left quarter of a 100 x 100 image; its right/bottom are inner
    boxes = torch.tensor([[10, 10, 50, 30], [0, 0, 20, 20], [10, 10, 30, 30], [5, 40, 20, 49]])
    near = mask_ops.is_box_near_crop_edge(boxes, crop, (0, 0, 100, 100), atol=5)
    assert near.tolist() == [True, False, False, True]


def test_crop_edge_filter_works_in_crop_frame() -> None:
    # Crop at (50, 0): a box at crop-x 0 touches the inner left edge at image-x 50.
    near = mask_ops.is_box_near_crop_edge(
        torch.tensor([[0, 10, 20, 20], [20, 10, 50, 20]]), (50, 0, 100, 50), (0, 0, 100, 100), 5
    )
    assert near.tolist() == [True, False]


def test_uncrop_masks_places_crop() -> None:
    masks = torch.ones((1, 2, 3), dtype=torch.bool)
    full = mask_ops.uncrop_masks(masks, (4, 1, 7, 3), (5, 8))
    assert full.shape == (1, 5, 8)
    assert full.sum() == 6
    assert full[0, 1:3, 4:7].all()


def test_remove_small_holes_and_islands() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[4:6, 4:6] = False  # small hole (4 px)
    mask[7:11, 7:11] = False  # large hole (16 px)
    mask[16, 16] = True  # small island (1 px)
    filled, changed = mask_ops.remove_small_regions(mask, 5, "holes")
    assert changed
    assert filled[4:6, 4:6].all()
    assert not filled[7:11, 7:11].any()
    cleaned, changed = mask_ops.remove_small_regions(filled, 5, "islands")
    assert changed
    assert not cleaned[16, 16]
    assert cleaned.sum() == 100 - 16


def test_remove_small_regions_unchanged_and_keeps_largest_island() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:3, 1:3] = True
    mask[6:9, 6:9] = True
    same, changed = mask_ops.remove_small_regions(mask, 2, "islands")
    assert not changed
    assert same is mask
    largest, changed = mask_ops.remove_small_regions(mask, 50, "islands")
    assert changed
    assert largest.sum() == 9
    assert largest[6:9, 6:9].all()


def test_islands_are_eight_connected() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # one diagonal component of 3 px
    _, changed = mask_ops.remove_small_regions(mask, 3, "islands")
    assert not changed


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(0, 3), st.integers(1, 12), st.integers(1, 12))))
def test_pack_unpack_round_trip(masks: np.ndarray) -> None:
    packed = mask_ops.pack_masks(torch.from_numpy(masks))
    assert packed.dtype == np.uint8
    assert packed.shape == (masks.shape[0], -(-masks.shape[1] * masks.shape[2] // 8))
    np.testing.assert_array_equal(mask_ops.unpack_masks(packed, masks.shape[1:]), masks)
