"""Agreement of predictions with reviewed labels on constructed images: known true positives,
false positives and false negatives give exact precision, recall and mask IoU."""

import numpy as np
import pytest

from autolabel.storage.db.quality_rows import ScoredPrediction
from autolabel.storage.db.reviewed_labels import ReviewedLabel
from autolabel.storage.db.tables import ReviewStatus
from autolabel.storage.rle import Rle, encode_mask
from autolabel.tasks.quality.agreement import (
    AgreementTally,
    CategoryTally,
    mask_ious,
    match_image,
)

SIZE = (20, 30)
CAT, DOG = 1, 2


def _rle(rows: tuple[int, int], cols: tuple[int, int], size: tuple[int, int] = SIZE) -> Rle:
    mask = np.zeros(size, dtype=np.bool_)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return encode_mask(mask)


def _pred(
    aid: int,
    rle: Rle,
    *,
    category: int = CAT,
    score: float | None = 0.5,
    status: ReviewStatus = ReviewStatus.UNREVIEWED,
) -> ScoredPrediction:
    return ScoredPrediction(
        annotation_id=aid,
        image_id=1,
        category_id=category,
        score=score,
        review_status=status,
        rle=rle,
    )


def _label(aid: int, rle: Rle, *, category: int = CAT, added: bool = True) -> ReviewedLabel:
    return ReviewedLabel(
        annotation_id=aid,
        category_id=category,
        category=str(category),
        bbox_xywh_px=(0, 0, 1, 1),
        rle=rle,
        added_by_review=added,
    )


def test_accepted_prediction_matches_itself_and_rejected_is_a_false_positive() -> None:
    a, b = _rle((0, 10), (0, 10)), _rle((0, 10), (0, 10))
    accepted = _pred(1, a, status=ReviewStatus.ACCEPTED)
    rejected = _pred(2, b, status=ReviewStatus.REJECTED)  # overlaps the label exactly: still FP
    out = match_image([accepted, rejected], [_label(1, a, added=False)], iou_threshold=0.5)
    assert out == {CAT: CategoryTally(tp=1, fp=1, fn=0, iou_sum=1.0)}


def test_a_corrected_prediction_matches_its_copy_at_the_threshold_only() -> None:
    original = _rle((0, 10), (0, 20))  # 200 px
    corrected = _rle((0, 10), (5, 20))  # 150 px inside it: IoU 0.75
    prediction = _pred(1, original, status=ReviewStatus.SUPERSEDED)
    at_half = match_image([prediction], [_label(9, corrected)], iou_threshold=0.5)
    assert at_half[CAT].tp == 1
    assert at_half[CAT].iou_sum == pytest.approx(0.75)
    strict = match_image([prediction], [_label(9, corrected)], iou_threshold=0.8)
    assert strict == {CAT: CategoryTally(tp=0, fp=1, fn=1, iou_sum=0.0)}


def test_matching_is_greedy_by_score_and_one_to_one() -> None:
    label = _rle((0, 10), (0, 10))  # 100 px
    high = _pred(1, _rle((0, 10), (0, 6)), score=0.9)  # IoU 0.6
    low = _pred(2, _rle((0, 10), (0, 9)), score=0.4)  # IoU 0.9, but the label is taken
    out = match_image([low, high], [_label(9, label)], iou_threshold=0.5)
    assert (out[CAT].tp, out[CAT].fp, out[CAT].fn) == (1, 1, 0)
    assert out[CAT].iou_sum == pytest.approx(0.6)


def test_categories_never_match_each_other() -> None:
    mask = _rle((0, 10), (0, 10))
    out = match_image(
        [_pred(1, mask, category=CAT)], [_label(9, mask, category=DOG)], iou_threshold=0.5
    )
    assert out == {CAT: CategoryTally(fp=1), DOG: CategoryTally(fn=1)}


def test_a_known_set_gives_exact_precision_recall_and_iou() -> None:
    """Image 1: cat accepted (TP 1.0), cat rejected (FP), dog corrected at IoU 0.75 (TP), cat
    added by the reviewer (FN). Image 2: dog corrected at IoU 0.3 (FP, and its copy FN), an
    unreviewed cat matching an added cat at IoU 0.5 (TP: the threshold is inclusive)."""
    tally = AgreementTally()
    a = _rle((0, 5), (0, 5))
    tally.add_image(
        match_image(
            [
                _pred(1, a, status=ReviewStatus.ACCEPTED, score=0.9),
                _pred(2, _rle((10, 15), (0, 5)), status=ReviewStatus.REJECTED),
                _pred(3, _rle((0, 10), (10, 30)), category=DOG, status=ReviewStatus.SUPERSEDED),
            ],
            [
                _label(1, a, added=False),
                _label(10, _rle((0, 10), (15, 30)), category=DOG),
                _label(11, _rle((15, 20), (20, 30))),
            ],
            iou_threshold=0.5,
        )
    )
    tally.add_image(
        match_image(
            [
                _pred(4, _rle((0, 10), (0, 20)), category=DOG, status=ReviewStatus.SUPERSEDED),
                _pred(5, _rle((10, 20), (0, 10)), score=None),
            ],
            [_label(12, _rle((0, 10), (14, 20)), category=DOG), _label(13, _rle((10, 20), (0, 5)))],
            iou_threshold=0.5,
        )
    )
    assert tally.images == 2
    cat, dog, total = tally.categories[CAT], tally.categories[DOG], tally.total()
    assert (cat.tp, cat.fp, cat.fn) == (2, 1, 1)
    assert (dog.tp, dog.fp, dog.fn) == (1, 1, 1)
    assert cat.precision == pytest.approx(2 / 3)
    assert cat.recall == pytest.approx(2 / 3)
    assert cat.mean_iou == pytest.approx((1.0 + 0.5) / 2)
    assert dog.mean_iou == pytest.approx(0.75)
    assert (total.precision, total.recall, total.f1) == pytest.approx((0.6, 0.6, 0.6))
    assert total.mean_iou == pytest.approx((1.0 + 0.5 + 0.75) / 3)


def test_masks_of_another_size_are_fitted_to_the_image() -> None:
    taller = _rle((0, 21), (0, 10), size=(21, 30))  # one row more than the image
    ious = mask_ious([_rle((0, 20), (0, 10))], [taller], size=SIZE)
    assert ious.tolist() == [[1.0]]
    out = match_image(
        [_pred(1, _rle((0, 20), (0, 10)))], [_label(9, taller)], iou_threshold=0.99, size=SIZE
    )
    assert out[CAT].tp == 1


def test_empty_inputs_and_undefined_ratios() -> None:
    assert match_image([], [], iou_threshold=0.5) == {}
    assert mask_ious([], [_rle((0, 1), (0, 1))], size=SIZE).shape == (0, 1)
    empty = CategoryTally()
    assert (empty.precision, empty.recall, empty.f1, empty.mean_iou) == (None, None, None, None)
    only_labels = match_image([], [_label(9, _rle((0, 5), (0, 5)))], iou_threshold=0.5)
    assert only_labels[CAT].recall == 0.0
    assert only_labels[CAT].precision is None


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_the_iou_threshold_must_lie_in_zero_one(threshold: float) -> None:
    with pytest.raises(ValueError, match="IoU threshold"):
        match_image([], [], iou_threshold=threshold)
