"""Prompt sampling: GT boxes or 1-10 foreground points, in the 1024 prompt frame."""

import numpy as np
import pytest
import torch

from autolabel.models.errors import InvalidInputError
from autolabel.models.training.prompt_sampling import PAD_LABEL, mask_boxes_xyxy, sample_prompts


def _masks() -> torch.Tensor:
    masks = torch.zeros((40, 128, 128), dtype=torch.bool)
    for i in range(40):
        masks[i, 10 + i : 30 + i, 5 + 2 * i : 9 + 2 * i] = True
    return masks


def test_boxes_are_tight_exclusive_pixel_boxes() -> None:
    masks = torch.zeros((2, 8, 10), dtype=torch.bool)
    masks[0, 2:5, 3:7] = True  # rows 2-4, cols 3-6
    masks[1, 7, 9] = True
    boxes = mask_boxes_xyxy(masks)
    assert boxes.tolist() == [[3.0, 2.0, 7.0, 5.0], [9.0, 7.0, 10.0, 8.0]]


def test_box_prompts_scale_to_the_1024_frame() -> None:
    masks = _masks()
    prompts = sample_prompts(masks, np.random.default_rng(0), box_probability=1.0)
    assert prompts.point_index.numel() == 0
    expected = mask_boxes_xyxy(masks) * (1024 / 128)
    torch.testing.assert_close(prompts.boxes_xyxy, expected)


def test_points_lie_on_their_masks_and_number_one_to_ten() -> None:
    masks = _masks()
    prompts = sample_prompts(masks, np.random.default_rng(1), box_probability=0.0)
    assert prompts.box_index.numel() == 0
    counts = (prompts.point_labels == 1).sum(1)
    assert int(counts.min()) >= 1
    assert int(counts.max()) <= 10
    assert len(set(counts.tolist())) > 3  # the count varies
    for row, i in enumerate(prompts.point_index.tolist()):
        n = int(counts[row])
        assert (prompts.point_labels[row, n:] == PAD_LABEL).all()
        px = (prompts.point_coords[row, :n] * 128 / 1024).round().long()
        assert masks[i, px[:, 1], px[:, 0]].all()


def test_box_or_points_with_equal_probability() -> None:
    masks = _masks()
    n_box = sum(
        sample_prompts(masks, np.random.default_rng(seed)).box_index.numel() for seed in range(25)
    )
    assert 0.4 < n_box / (25 * 40) < 0.6


def test_same_generator_state_gives_same_prompts() -> None:
    a = sample_prompts(_masks(), np.random.default_rng(7))
    b = sample_prompts(_masks(), np.random.default_rng(7))
    assert torch.equal(a.point_coords, b.point_coords)
    assert torch.equal(a.box_index, b.box_index)


def test_empty_mask_is_rejected() -> None:
    masks = torch.zeros((1, 16, 16), dtype=torch.bool)
    with pytest.raises(InvalidInputError, match="non-empty"):
        sample_prompts(masks, np.random.default_rng(0))
