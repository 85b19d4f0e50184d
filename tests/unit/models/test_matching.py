"""Greedy one-to-one matching: row order decides, each reference is taken once, the threshold
is inclusive, ties go to the lowest column."""

import numpy as np
import pytest

from autolabel.models.matching import greedy_match


def test_the_first_row_takes_the_reference_it_overlaps_most() -> None:
    ious = np.array([[0.6, 0.9], [0.8, 0.95], [0.7, 0.1]], dtype=np.float32)
    # row 0 takes column 1; row 1 falls back to column 0; row 2 finds nothing free.
    assert greedy_match(ious, iou_threshold=0.5).tolist() == [1, 0, -1]


def test_below_the_threshold_is_no_match_and_the_threshold_itself_is() -> None:
    ious = np.array([[0.49], [0.5]])
    assert greedy_match(ious, iou_threshold=0.5).tolist() == [-1, 0]


def test_a_tie_goes_to_the_lowest_column() -> None:
    assert greedy_match(np.array([[0.7, 0.7]]), iou_threshold=0.5).tolist() == [0]


def test_empty_sides() -> None:
    assert greedy_match(np.zeros((2, 0)), iou_threshold=0.5).tolist() == [-1, -1]
    assert greedy_match(np.zeros((0, 3)), iou_threshold=0.5).tolist() == []
    with pytest.raises(ValueError, match=r"expected \(K, L\) IoUs"):
        greedy_match(np.zeros(3), iou_threshold=0.5)
