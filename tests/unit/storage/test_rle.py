"""RLE helpers: property-tested round trips, area and bbox, the >255 RLE workaround, polygons."""

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from autolabel.storage.errors import FormatError
from autolabel.storage.rle import (
    Rle,
    decode_rle,
    encode_mask,
    encode_masks,
    mask_to_polygons,
    polygons_or_rle,
    polygons_to_rle,
    rle_areas,
    rle_bboxes,
    rle_ious,
    uncompressed_to_rle,
)

masks_hw = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.bool_, hw, elements=st.booleans())
)


def _bbox_of(mask: npt.NDArray[np.bool_]) -> list[float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@settings(max_examples=200, deadline=None)
@given(masks_hw)
def test_decode_encode_roundtrip_area_and_bbox(mask: npt.NDArray[np.bool_]) -> None:
    rle = encode_mask(mask)
    assert isinstance(rle["counts"], str)
    assert rle["size"] == [mask.shape[0], mask.shape[1]]
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_areas([rle])[0] == mask.sum()
    np.testing.assert_array_equal(rle_bboxes([rle])[0], _bbox_of(mask))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 6).flatmap(lambda n: arrays(np.bool_, (9, 7, n), elements=st.booleans())))
def test_stack_encoding_matches_per_mask(stack: npt.NDArray[np.bool_]) -> None:
    rles = encode_masks(np.asfortranarray(stack.astype(np.uint8)))
    assert len(rles) == stack.shape[2]
    for i, rle in enumerate(rles):
        assert rle == encode_mask(stack[:, :, i])


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(0, 3), st.integers(1, 12), st.integers(1, 12))))
def test_nhw_stack_round_trip_area_and_pycocotools_counts(masks: npt.NDArray[np.bool_]) -> None:
    # Moved from the models' duplicate codec: (N, H, W) stacks, as mask generators return them.
    rles = encode_masks(masks.transpose(1, 2, 0))
    assert len(rles) == masks.shape[0]
    for mask, rle in zip(masks, rles, strict=True):
        assert isinstance(rle["counts"], str)
        assert rle["size"] == list(mask.shape)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        assert rle_areas([rle])[0] == mask.sum()
        direct = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["counts"] == direct["counts"].decode()


def test_a_thousand_rles_avoid_the_pycocotools_uint8_overflow() -> None:
    rng = np.random.default_rng(0)
    stack = rng.random((16, 12, 1000)) > 0.6
    rles = encode_masks(stack)
    areas = rle_areas(rles)
    boxes = rle_bboxes(rles)
    np.testing.assert_array_equal(areas, stack.sum(axis=(0, 1)))
    for i in (0, 254, 255, 256, 511, 999):
        np.testing.assert_array_equal(boxes[i], _bbox_of(stack[:, :, i]))


def test_decode_rejects_inconsistent_counts() -> None:
    rle = encode_mask(np.ones((4, 4), dtype=bool))
    with pytest.raises(FormatError, match="summing to 4\\*5"):
        decode_rle(Rle(size=[4, 5], counts=rle["counts"]))
    with pytest.raises(FormatError, match="complete RLE"):
        decode_rle(Rle(size=[4, 4], counts="0o"))  # continuation bit set on the last char


def test_uncompressed_rle_matches_compressed() -> None:
    mask = np.zeros((5, 4), dtype=bool)
    mask[1:3, 1:3] = True
    column_major = mask.T.ravel()
    runs, current, length = [], False, 0
    for value in column_major:
        if value != current:
            runs.append(length)
            current, length = value, 0
        length += 1
    runs.append(length)
    assert uncompressed_to_rle(runs, 5, 4) == encode_mask(mask)
    with pytest.raises(FormatError):
        uncompressed_to_rle([1, 2], 5, 4)


def test_polygons_roundtrip_a_blob_and_skip_degenerate_masks() -> None:
    yy, xx = np.mgrid[:40, :50]
    disk = (yy - 20) ** 2 + (xx - 24) ** 2 <= 12**2
    polygons = mask_to_polygons(disk)
    assert len(polygons) == 1
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
    back = decode_rle(polygons_to_rle(polygons, 40, 50))
    iou = (back & disk).sum() / (back | disk).sum()
    assert iou > 0.98
    assert mask_to_polygons(np.zeros((6, 6), dtype=bool)) == []
    line = np.zeros((6, 6), dtype=bool)
    line[2, :] = True
    line_polygons = polygons_or_rle(line)
    assert isinstance(line_polygons, list)
    assert all(len(p) >= 6 for p in line_polygons)
    back_line = decode_rle(polygons_to_rle(line_polygons, 6, 6))
    assert (back_line & line).sum() / (back_line | line).sum() >= 0.8


def test_single_pixel_masks_fall_back_to_rle_when_polygons_miss_them() -> None:
    kinds = set()
    for row in range(6):
        for col in range(6):
            dot = np.zeros((6, 6), dtype=bool)
            dot[row, col] = True
            assert all(len(p) >= 6 for p in mask_to_polygons(dot))
            segmentation = polygons_or_rle(dot)
            if isinstance(segmentation, dict):
                assert segmentation == encode_mask(dot)
                kinds.add("rle")
            else:
                np.testing.assert_array_equal(decode_rle(polygons_to_rle(segmentation, 6, 6)), dot)
                kinds.add("polygon")
    assert "rle" in kinds
    assert polygons_or_rle(np.zeros((5, 5), dtype=bool)) == encode_mask(np.zeros((5, 5), bool))


def test_polygon_export_fills_holes() -> None:
    ring = np.zeros((20, 20), dtype=bool)
    ring[2:18, 2:18] = True
    ring[8:12, 8:12] = False
    polygons = mask_to_polygons(ring, tolerance_px=0)
    assert len(polygons) == 1
    back = decode_rle(polygons_to_rle(polygons, 20, 20))
    assert back[10, 10]


def test_polygons_with_too_few_points_are_format_errors() -> None:
    with pytest.raises(FormatError, match=">= 3"):
        polygons_to_rle([[0.0, 0.0, 1.0, 1.0]], 4, 4)


def test_rle_ious_match_decoded_masks_and_refuse_mixed_sizes() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((12, 10, 3)) > 0.5, rng.random((12, 10, 2)) > 0.5
    a[:, :, 2] = False
    b[:, :, 1] = False
    ious = rle_ious(encode_masks(a), encode_masks(b))
    for i, j in np.ndindex(3, 2):
        union = (a[:, :, i] | b[:, :, j]).sum()
        expected = (a[:, :, i] & b[:, :, j]).sum() / union if union else 0.0
        assert ious[i, j] == pytest.approx(expected)
    assert ious[2, 1] == 0.0  # both empty
    assert rle_ious([], encode_masks(b)).shape == (0, 2)
    with pytest.raises(ValueError, match="one size"):
        rle_ious(encode_masks(a), [encode_mask(np.zeros((12, 11), dtype=np.bool_))])
