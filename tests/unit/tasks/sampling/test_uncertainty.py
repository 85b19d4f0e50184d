"""Uncertainty sampling's core on a constructed set: 30 images of confident `person` masks and
five planted ones, each uncertain by one signal (low predicted IoU, low stability, a detector
score just above its threshold, a stored box the mask does not fill, the only `forklift`)."""

from collections import Counter

import pytest
from pydantic import ValidationError

from autolabel.storage.db.sampling_rows import SignalRow
from autolabel.tasks.sampling.uncertainty import (
    SamplingPolicy,
    SignalWeights,
    annotation_uncertainty,
    choose,
    rarity,
    score_images,
)

PERSON, FORKLIFT = 1, 2
NAMES = {PERSON: "person", FORKLIFT: "forklift"}
BOX = (4.0, 4.0, 20.0, 10.0)
#: planted image id -> the signal that must drive it
PLANTED = {
    101: "predicted_iou",
    102: "stability",
    103: "detector_score",
    104: "box_mask",
    105: "rarity",
}


def _row(
    image_id: int, annotation_id: int, category_id: int = PERSON, **signals: object
) -> SignalRow:
    values: dict[str, object] = {
        "score": 0.7,
        "predicted_iou": 0.95,
        "stability_score": 0.97,
        "bbox_xywh_px": BOX,
        "mask_bbox_xywh_px": BOX,
        "box_iou": None,
        "score_threshold": 0.35,
        "accepted": False,
        **signals,
    }
    return SignalRow(
        image_id=image_id,
        storage_key=f"file:///raw/{image_id}.png",
        annotation_id=annotation_id,
        category_id=category_id,
        **values,  # type: ignore[arg-type]
    )


def _rows() -> list[SignalRow]:
    rows = []
    for image_id in range(1, 31):
        rows += [_row(image_id, 10 * image_id), _row(image_id, 10 * image_id + 1)]
    rows += [
        _row(101, 1010, predicted_iou=0.3),
        _row(101, 1011),
        _row(102, 1020, stability_score=0.4),  # a single annotation
        _row(103, 1030, score=0.36),
        _row(103, 1031),
        _row(104, 1040, bbox_xywh_px=(4.0, 4.0, 40.0, 40.0)),
        _row(104, 1041),
        _row(105, 1050, category_id=FORKLIFT),
        _row(105, 1051),
        _row(105, 1052),
    ]
    return rows


def _choose(rows: list[SignalRow], **policy: object) -> list[tuple[int, str, str]]:
    counts = Counter(row.category_id for row in rows)
    settings = SamplingPolicy(**policy)  # type: ignore[arg-type]
    candidates, n_rows = score_images(rows, counts=counts, policy=settings)
    assert n_rows == len(rows)
    choice = choose(candidates, policy=settings, counts=counts, names=NAMES)
    return [(c.image_id, c.driver, c.picked_for) for c in choice.chosen]


def test_the_budget_picks_exactly_the_planted_images_with_their_drivers() -> None:
    chosen = _choose(_rows(), budget=5)
    assert {image_id: driver for image_id, driver, _ in chosen} == PLANTED
    assert [image_id for image_id, _, _ in chosen] == [105, 103, 104, 101, 102]  # best first
    assert _choose(_rows(), budget=3) == chosen[:3]


def test_signals_and_the_weighted_mean() -> None:
    policy = SamplingPolicy(budget=1)
    near = annotation_uncertainty(_row(1, 1, score=0.36), rarity=0.0, policy=policy)
    assert near.signals["detector_score"] == pytest.approx(0.9)  # 0.01 above t, margin 0.1
    assert near.value == pytest.approx((0.05 + 0.03 + 0.9) / 5)
    disagree = _row(1, 2, bbox_xywh_px=(4.0, 4.0, 40.0, 40.0))
    u = annotation_uncertainty(disagree, rarity=0.0, policy=policy)
    assert u.signals["box_mask"] == pytest.approx(1 - 200 / 1600)
    empty = annotation_uncertainty(
        _row(1, 3, mask_bbox_xywh_px=(0.0,) * 4), rarity=0, policy=policy
    )
    assert empty.signals["box_mask"] == 1.0
    # missing signals leave the mean; the others' weights are renormalised
    bare = _row(1, 4, score=None, predicted_iou=None, stability_score=None)
    u = annotation_uncertainty(bare, rarity=0.5, policy=policy)
    assert set(u.signals) == {"box_mask", "rarity"}
    assert (u.value, u.driver) == (pytest.approx(0.25), "rarity")
    # no recorded threshold: the policy's default
    unknown = annotation_uncertainty(
        _row(1, 5, score=0.4, score_threshold=None), rarity=0, policy=policy
    )
    assert unknown.signals["detector_score"] == pytest.approx(0.5)
    accepted = annotation_uncertainty(
        _row(1, 6, predicted_iou=0.1, accepted=True), rarity=1, policy=policy
    )
    assert (accepted.value, accepted.driver) == (0.0, "accepted")


def test_rarity_is_log_inverse_frequency() -> None:
    assert rarity({1: 100, 2: 1, 3: 10}) == pytest.approx({1: 0.0, 2: 1.0, 3: 0.5})
    assert rarity({1: 7}) == {1: 0.0}
    assert rarity({1: 1, 2: 1}) == {1: 0.0, 2: 0.0}


def test_weights_change_the_choice_as_documented() -> None:
    # rarity off: the forklift image is as confident as the rest and drops out
    chosen = _choose(_rows(), budget=4, weights=SignalWeights(rarity=0))
    assert {c[0] for c in chosen} == {101, 102, 103, 104}
    # predicted IoU weighted up: its image comes first
    assert _choose(_rows(), budget=1, weights=SignalWeights(predicted_iou=10))[0][0] == 101
    # only one signal on: only its planted image stands out
    only = SignalWeights(predicted_iou=0, stability=1, detector_score=0, box_mask=0, rarity=0)
    assert _choose(_rows(), budget=1, weights=only) == [(102, "stability", "score")]


def test_an_annotation_budget_takes_whole_images_while_they_fit() -> None:
    rows = _rows()
    per_image = Counter(row.image_id for row in rows)
    chosen = _choose(rows, budget=5, unit="annotations")
    assert [c[0] for c in chosen] == [105, 103]  # 3 + 2 annotations
    # 105 (3) fits, 103, 104 and 101 (2 each) do not fit the 1 left, 102 (1) does
    chosen = _choose(rows, budget=4, unit="annotations")
    assert [c[0] for c in chosen] == [105, 102]
    assert sum(per_image[c[0]] for c in chosen) == 4
    assert _choose(rows, budget=2, unit="annotations")[0][0] == 103


def test_a_category_minimum_reserves_the_rare_category_first() -> None:
    weights = SignalWeights(rarity=0)
    chosen = _choose(_rows(), budget=4, weights=weights, min_per_category=1)
    picked_for = {image_id: reason for image_id, _, reason in chosen}
    assert picked_for == {105: "category:forklift", 103: "score", 104: "score", 101: "score"}
    assert chosen[-1][0] == 105  # reserved, yet listed by score


def test_the_choice_is_deterministic_and_ties_break_by_image_id() -> None:
    rows = _rows()
    shuffled = sorted(rows, key=lambda row: (row.annotation_id * 7919) % 1009)
    assert shuffled != rows
    assert _choose(shuffled, budget=8) == _choose(rows, budget=8)
    same = [_row(image_id, image_id) for image_id in (9, 3, 5, 1, 7)]
    assert [c[0] for c in _choose(same, budget=3)] == [1, 3, 5]


def test_top_k_averages_an_images_most_uncertain_annotations() -> None:
    one_bad = [_row(1, 1, predicted_iou=0.2), _row(1, 2), _row(1, 3)]
    two_fair = [_row(2, 4, predicted_iou=0.5), _row(2, 5, predicted_iou=0.5), _row(2, 6)]
    assert _choose(one_bad + two_fair, budget=1)[0][0] == 1
    assert _choose(one_bad + two_fair, budget=1, top_k=2)[0][0] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("iou=2", "Extra inputs are not permitted"),
        ("predicted_iou", "expected weights as name=value"),
        ("predicted_iou=-1", "greater than or equal to 0"),
        ("predicted_iou=0,stability=0,detector_score=0,box_mask=0,rarity=0", "all zero"),
    ],
)
def test_bad_weights_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SignalWeights.parse(text)
    assert SignalWeights.parse(" rarity = 0 , box_mask=2") == SignalWeights(rarity=0, box_mask=2)


def test_the_policy_validates_its_bounds() -> None:
    for bad in ({"budget": 0}, {"budget": 1, "unit": "masks"}, {"budget": 1, "score_margin": 0}):
        with pytest.raises(ValidationError):
            SamplingPolicy(**bad)  # type: ignore[arg-type]


def test_the_detector_box_agreement_stored_by_labeling_drives_box_mask() -> None:
    policy = SamplingPolicy(budget=1)
    agreeing = annotation_uncertainty(_row(1, 1, box_iou=0.95), rarity=0.0, policy=policy)
    spilling = annotation_uncertainty(_row(1, 2, box_iou=0.2), rarity=0.0, policy=policy)
    assert spilling.signals["box_mask"] == pytest.approx(0.8)
    assert agreeing.signals["box_mask"] == pytest.approx(0.05)
    assert spilling.value > agreeing.value
