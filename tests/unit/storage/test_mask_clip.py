"""Masks and boxes fitted to their image (cvat#9316: a mask one row taller than its image)."""

import numpy as np
import pytest

from autolabel.storage.mask_clip import clip_box, fit_instance, fit_mask, fit_rle
from autolabel.storage.rle import decode_rle, encode_mask, rle_areas


def test_mask_one_row_taller_than_the_image_is_cropped_box_clipped_area_recounted() -> None:
    height, width = 33, 47
    stored = np.zeros((height + 1, width), dtype=np.bool_)
    stored[20:, 10:20] = True  # 14 rows, the last one outside the image
    rle = encode_mask(stored)
    fitted = fit_instance(rle, (10.0, 20.0, 10.0, 14.0), float(stored.sum()), height=33, width=47)
    mask = decode_rle(fitted.rle)
    assert mask.shape == (height, width)
    np.testing.assert_array_equal(mask, stored[:height])
    assert fitted.bbox_xywh_px == (10.0, 20.0, 10.0, 13.0)
    assert fitted.area == 130.0 == float(rle_areas([fitted.rle])[0])
    assert fitted.changed
    assert rle["size"] == [height + 1, width]  # the stored RLE is untouched


def test_smaller_mask_is_padded_with_background() -> None:
    stored = np.ones((4, 5), dtype=np.bool_)
    mask = fit_mask(stored, height=6, width=3)
    assert mask.shape == (6, 3)
    assert mask[:4].all()
    assert not mask[4:].any()


def test_an_image_sized_instance_inside_the_image_passes_through() -> None:
    mask = np.zeros((8, 9), dtype=np.bool_)
    mask[1:3, 2:5] = True
    rle = encode_mask(mask)
    fitted = fit_instance(rle, (2.0, 1.0, 3.0, 2.0), 6.0, height=8, width=9)
    assert fitted.rle is rle
    assert (fitted.bbox_xywh_px, fitted.area, fitted.changed) == ((2.0, 1.0, 3.0, 2.0), 6.0, False)
    assert fit_mask(mask, height=8, width=9) is mask


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((40.0, 5.0, 20.0, 10.0), (40.0, 5.0, 7.0, 10.0)),
        ((-3.0, -2.0, 5.0, 4.0), (0.0, 0.0, 2.0, 2.0)),
        ((50.0, 40.0, 3.0, 3.0), (47.0, 33.0, 0.0, 0.0)),
        ((0.0, 0.0, 47.0, 33.0), (0.0, 0.0, 47.0, 33.0)),
    ],
)
def test_boxes_are_clipped_to_the_image(
    box: tuple[float, float, float, float], expected: tuple[float, float, float, float]
) -> None:
    assert clip_box(box, height=33, width=47) == expected


def test_rles_are_fitted_like_masks_and_passed_through_when_they_fit() -> None:
    stored = np.ones((4, 5), dtype=np.bool_)
    rle = encode_mask(stored)
    assert fit_rle(rle, height=4, width=5) is rle
    fitted = fit_rle(rle, height=6, width=3)
    assert fitted["size"] == [6, 3]
    assert (decode_rle(fitted) == fit_mask(stored, height=6, width=3)).all()
