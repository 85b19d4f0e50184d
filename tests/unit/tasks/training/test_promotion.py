"""The promotion guard: no decision on a held-out evaluation that skipped too many items."""

import pytest
from pydantic import ValidationError

from autolabel.tasks.training.retrain import (
    ItemCounts,
    ModelScore,
    RetrainRequest,
    decide_promotion,
    incomplete_evaluation,
    training_counts,
)


def score(name: str, miou: float, used: int, skipped: int) -> ModelScore:
    return ModelScore(
        name=name, metrics={"miou": miou}, items=ItemCounts(used=used, skipped=skipped)
    )


def request(**fields: float) -> RetrainRequest:
    return RetrainRequest(data="s3://b/train", holdout="s3://b/holdout", **fields)  # type: ignore[arg-type]


def test_an_evaluation_over_the_fraction_is_named_with_its_numbers() -> None:
    scores = [score("cand", 0.9, used=7, skipped=3), score("prod", 0.1, used=10, skipped=0)]
    assert incomplete_evaluation(scores, 0.05) == (
        "not deciding: the held-out evaluation of cand skipped 3 of 10 items (30.0% > 5.0%)"
    )
    assert incomplete_evaluation(scores[::-1], 0.05) == incomplete_evaluation(scores, 0.05)


@pytest.mark.parametrize(
    ("used", "skipped", "fraction", "refused"),
    [
        (19, 1, 0.05, False),  # exactly the fraction: still decided
        (18, 2, 0.05, True),
        (0, 1, 0.99, True),  # nothing usable at all
        (0, 0, 0.0, False),  # nothing skipped
        (5, 5, 1.0, False),  # a fraction of 1 never refuses
        (10, 1, 0.0, True),  # a fraction of 0 refuses any skipped item
    ],
)
def test_the_fraction_rule_at_its_edges(
    used: int, skipped: int, fraction: float, refused: bool
) -> None:
    scores = [score("cand", 0.5, used=10, skipped=0), score("prod", 0.5, used, skipped)]
    reason = incomplete_evaluation(scores, fraction)
    assert (reason is not None) == refused
    if reason is not None:
        assert reason.startswith("not deciding: the held-out evaluation of prod skipped")


def test_decide_promotion_refuses_first_then_compares_miou() -> None:
    better, worse = score("cand", 0.9, 10, 0), score("prod", 0.1, 10, 0)
    assert decide_promotion(better, worse, request()) == (
        True,
        "mIoU 0.9000 beats prod (0.1000) by more than 0.005",
    )
    promoted, reason = decide_promotion(better, score("prod", 0.1, 9, 1), request())
    assert not promoted
    assert reason == (
        "not deciding: the held-out evaluation of prod skipped 1 of 10 items (10.0% > 5.0%)"
    )
    assert decide_promotion(better, score("prod", 0.1, 9, 1), request(max_skipped_fraction=0.1))[0]
    assert not decide_promotion(worse, better, request())[0]


def test_max_skipped_fraction_is_a_fraction() -> None:
    assert request().max_skipped_fraction == 0.05
    for bad in (-0.1, 1.5):
        with pytest.raises(ValidationError):
            request(max_skipped_fraction=bad)


def test_training_counts_of_a_stored_result() -> None:
    assert training_counts({"samples_used": 8, "samples_skipped": 2}) == ItemCounts(
        used=8, skipped=2
    )
    assert training_counts({"step": 3}) == ItemCounts(used=0, skipped=0)  # stored before counts
