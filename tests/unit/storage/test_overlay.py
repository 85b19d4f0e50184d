"""Overlays blend masks over the image and come out as PNG."""

import io

import numpy as np
import pytest
from PIL import Image

from autolabel.storage.overlay import render_overlay


def test_mask_pixels_are_tinted_and_others_kept() -> None:
    rgb = np.full((40, 60, 3), 100, np.uint8)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:30] = True
    png = render_overlay(rgb, [mask], [(10, 10, 20, 10)], ["cat 0.9"])
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert out.shape == (40, 60, 3)
    assert not np.array_equal(out[15, 20], rgb[15, 20])  # inside the mask, away from the text
    assert np.array_equal(out[35, 55], rgb[35, 55])  # far from the mask and box


def test_large_images_are_downscaled() -> None:
    png = render_overlay(np.zeros((300, 2000, 3), np.uint8), [], [], [], max_side=500)
    assert Image.open(io.BytesIO(png)).size == (500, 75)


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="as many masks, boxes and labels"):
        render_overlay(np.zeros((4, 4, 3), np.uint8), [np.zeros((4, 4), bool)], [], ["a"])
    with pytest.raises(ValueError, match="masks of shape"):
        render_overlay(
            np.zeros((4, 4, 3), np.uint8), [np.zeros((3, 4), bool)], [(0, 0, 1, 1)], ["a"]
        )
