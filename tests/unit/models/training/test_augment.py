"""Resize/flip/pad of image and masks stays aligned with inference preprocessing."""

import numpy as np
import torch

from autolabel.models.training.augment import choose_masks, prepare_sample
from autolabel.models.transforms import preprocess_image


def _scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((60, 100, 3), dtype=np.uint8)
    masks = np.zeros((2, 60, 100), dtype=bool)
    masks[0, 10:30, 0:20] = True  # left
    masks[1, 40:50, 70:90] = True  # right
    image[masks[0]] = (250, 0, 0)
    image[masks[1]] = (0, 250, 0)
    return image, masks


def test_unflipped_image_equals_inference_preprocessing() -> None:
    image, masks = _scene()
    sample = prepare_sample(image, masks, input_size=128, flip=False)
    torch.testing.assert_close(sample.image, preprocess_image(image, 128), rtol=0, atol=0)
    assert sample.masks.shape == (2, 128, 128)
    # 100 px wide -> 128; 60 high -> 77: everything below row 77 and right of col 128 is pad
    assert not sample.masks[:, 77:].any()
    assert abs(int(sample.masks[0].sum()) - round(20 * 20 * 1.28**2)) < 40


def test_flip_mirrors_image_and_masks_together() -> None:
    image, masks = _scene()
    plain = prepare_sample(image, masks, input_size=128, flip=False)
    flipped = prepare_sample(image, masks, input_size=128, flip=True)
    assert torch.equal(flipped.masks[:, :77, :128], plain.masks[:, :77, :128].flip(-1))
    red = flipped.image[0] > flipped.image[1]  # red dominant pixels (normalised)
    inside = red[flipped.masks[0]].float().mean()
    assert inside > 0.95
    # the left object moved to the right half
    cols = torch.nonzero(flipped.masks[0])[:, 1]
    assert int(cols.min()) > 64


def test_masks_that_vanish_after_resizing_are_dropped() -> None:
    big = np.zeros((400, 1000, 3), dtype=np.uint8)
    dot = np.zeros((2, 400, 1000), dtype=bool)
    dot[0, 100, 100] = True  # 1 px at scale 0.128 -> below 0.5 coverage
    dot[1, 100:200, 100:300] = True
    sample = prepare_sample(big, dot, input_size=128, flip=False)
    assert sample.masks.shape[0] == 1


def test_choose_masks_caps_and_is_without_replacement() -> None:
    rng = np.random.default_rng(0)
    picks = choose_masks(100, 64, rng)
    assert len(picks) == 64
    assert len(set(picks.tolist())) == 64
    assert choose_masks(5, 64, rng).tolist() == [0, 1, 2, 3, 4]
