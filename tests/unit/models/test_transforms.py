"""Pre/post-processing: resize rule, normalisation, padding, prompt frame, mask upscaling."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from autolabel.models.errors import InvalidInputError
from autolabel.models.transforms import (
    PIXEL_MEAN,
    PIXEL_STD,
    PromptTransform,
    postprocess_masks,
    preprocess_image,
    preprocess_shape,
    resize_longest_side,
)


@pytest.mark.parametrize(
    ("hw", "long_side", "expected"),
    [((480, 640), 1024, (768, 1024)), ((480, 640), 512, (384, 512)), ((333, 500), 512, (341, 512))],
)
def test_preprocess_shape_rounds_half_up(
    hw: tuple[int, int], long_side: int, expected: tuple[int, int]
) -> None:
    assert preprocess_shape(*hw, long_side) == expected


def test_preprocess_resizes_normalises_and_pads_bottom_right() -> None:
    image = np.random.default_rng(1).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    x = preprocess_image(image, 128)
    assert x.shape == (3, 128, 128)
    assert x.dtype == torch.float32
    resized = np.asarray(Image.fromarray(image).resize((128, 64), Image.Resampling.BILINEAR))
    expected = (resized.astype(np.float64) - PIXEL_MEAN) / PIXEL_STD
    np.testing.assert_allclose(x[:, :64].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert torch.count_nonzero(x[:, 64:]) == 0


def test_resize_is_skipped_at_the_target_size() -> None:
    image = np.zeros((64, 128, 3), dtype=np.uint8)
    assert resize_longest_side(image, 128) is image


def test_read_only_image_is_accepted() -> None:
    image = np.zeros((128, 64, 3), dtype=np.uint8)
    image.flags.writeable = False
    assert preprocess_image(image, 128).shape == (3, 128, 128)


@given(
    h=st.integers(1, 3000),
    w=st.integers(1, 3000),
    x=st.floats(-1e4, 1e4, allow_nan=False),
    y=st.floats(-1e4, 1e4, allow_nan=False),
)
def test_prompt_transform_scales_each_axis(h: int, w: int, x: float, y: float) -> None:
    transform = PromptTransform()
    new_h, new_w = transform.prompt_size((h, w))
    assert max(new_h, new_w) == 1024
    got = transform.apply_coords(np.array([[x, y]]), (h, w))
    assert got.dtype == np.float64
    assert got[0, 0] == pytest.approx(x * new_w / w)
    assert got[0, 1] == pytest.approx(y * new_h / h)
    boxes = transform.apply_boxes(np.array([x, y, x, y]), (h, w))
    np.testing.assert_array_equal(boxes, np.concatenate([got, got], axis=1))
    as_torch = transform.apply_coords_torch(torch.tensor([[x, y]]), (h, w))
    assert as_torch.dtype == torch.float32
    np.testing.assert_allclose(as_torch.numpy(), got, rtol=1e-6, atol=1e-3)


def test_postprocess_crops_the_padding_and_resizes() -> None:
    low_res = torch.zeros(2, 3, 256, 256)
    low_res[..., :, 192:] = 5.0  # only the padded strip right of the 768-wide image is positive
    masks = postprocess_masks(low_res, (1024, 768), (40, 30))
    assert masks.shape == (2, 3, 40, 30)
    assert torch.all(masks < 0.5)
    with pytest.raises(InvalidInputError, match="256, 256"):
        postprocess_masks(torch.zeros(1, 1, 64, 64), (1024, 768), (40, 30))
