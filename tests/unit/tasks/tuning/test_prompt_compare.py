"""Prompt comparison with a fake detector: the phrasing that finds the reviewed objects ranks
first; bad phrasings are refused before any model runs."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
import torch
from pydantic import ValidationError

from autolabel.models.detection import Candidates, DetectionConfig, Detections, finalize_detections
from autolabel.models.prompts import PromptChunk, PromptSet
from autolabel.storage.rle import Rle, encode_mask
from autolabel.tasks.tuning.overlap import ReviewedObject
from autolabel.tasks.tuning.prompt_compare import (
    CompareRequest,
    PromptComparison,
    comparison_markdown,
    rank_phrasings,
    score_phrasings,
)
from autolabel.tasks.tuning.sample_scoring import SampleImage, floor_config
from autolabel.tasks.tuning.thresholds import Thresholds

HW = (120, 160)
OBJECTS = [(10.0, 10.0, 50.0, 60.0), (90.0, 40.0, 150.0, 100.0)]
ELSEWHERE = [(60.0, 5.0, 85.0, 30.0)]
# phrase -> (boxes it finds, their box score, their text score)
ANSWERS = {
    "forklift": (OBJECTS, 0.8, 0.7),
    "fork lift truck": (OBJECTS[:1], 0.6, 0.5),
    "pallet jack": (ELSEWHERE, 0.9, 0.8),
    "lift": (OBJECTS, 0.5, 0.3),
}


class PhraseDetector:
    """Finds fixed boxes per phrase (the same in every image), through the real
    post-processing."""

    def __init__(self) -> None:
        self.config = floor_config(DetectionConfig())
        self.calls: list[str] = []

    def chunks(self, prompt: PromptSet) -> list[PromptChunk]:
        del prompt
        return []

    def detect(
        self, images: Sequence[npt.NDArray[np.uint8]], prompt: PromptSet
    ) -> list[Detections]:
        (phrase,) = prompt.phrases
        self.calls.append(phrase)
        boxes, box_score, text_score = ANSWERS[phrase]
        n = len(boxes)
        candidates = Candidates(
            boxes_xyxy_px=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            box_scores=torch.full((n,), box_score),
            phrase_indices=torch.zeros(n, dtype=torch.long),
            phrase_scores=torch.full((n,), text_score),
            token_scores=tuple(torch.tensor([text_score]) for _ in range(n)),
        )
        return [finalize_detections(candidates, prompt, self.config, HW) for _ in images]


def box_mask(box: tuple[float, float, float, float]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(HW, dtype=np.bool_)
    x0, y0, x1, y1 = (round(v) for v in box)
    mask[y0:y1, x0:x1] = True
    return mask


def fill_boxes(rgb: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32]) -> list[Rle]:
    """A fake segmenter: each box's mask is the box, shrunk by two pixels."""
    del rgb
    return [encode_mask(box_mask((x0 + 2, y0 + 2, x1 - 2, y1 - 2))) for x0, y0, x1, y1 in boxes]


def sample(n_images: int = 3) -> list[SampleImage]:
    reviewed = [
        ReviewedObject(category="forklift", box_xyxy_px=b, mask=encode_mask(box_mask(b)))
        for b in OBJECTS
    ]
    person = ReviewedObject(category="person", box_xyxy_px=ELSEWHERE[0])
    return [
        SampleImage(i, np.zeros((*HW, 3), np.uint8), [*reviewed, person]) for i in range(n_images)
    ]


def test_the_phrasing_that_finds_the_reviewed_objects_ranks_first() -> None:
    detector = PhraseDetector()
    phrasings = ["pallet jack", "fork lift truck", "Forklift", "lift"]
    images = sample()
    scores = score_phrasings(
        [images[:2], images[2:]], detector, "forklift", phrasings, segment=fill_boxes
    )
    assert detector.calls == ["pallet jack", "fork lift truck", "forklift", "lift"] * 2
    current = Thresholds(box=0.35, text=0.35)
    ranked = rank_phrasings(scores, current, metric="f1", iou_threshold=0.5)
    assert [r.phrasing for r in ranked] == ["Forklift", "fork lift truck", "lift", "pallet jack"]
    best, half, low, wrong = ranked
    assert (best.score.tp, best.score.fp, best.score.fn) == (6, 0, 0)
    assert best.score.f1 == 1.0
    assert best.score.precision == best.score.recall == 1.0
    # masks 2 px inside the reviewed boxes: matched by mask IoU
    assert best.score.mean_iou is not None
    assert 0.8 < best.score.mean_iou < 1.0
    assert half.score.recall == pytest.approx(0.5)
    assert half.score.f1 == pytest.approx(2 / 3)
    # "lift" finds every object but below the current text threshold; at its own best
    # thresholds it would be perfect.
    assert low.score.f1 == 0.0
    assert low.best_score.f1 == 1.0
    assert low.best_thresholds == Thresholds(box=0.5, text=0.3)
    assert (wrong.score.tp, wrong.score.fp) == (0, 3)

    comparison = PromptComparison(
        dataset="ds",
        category="forklift",
        run_id=1,
        metric="f1",
        thresholds=current,
        iou_threshold=0.5,
        match_by="mask",
        images=3,
        labels=6,
        results=ranked,
    )
    assert comparison.best.phrasing == "Forklift"
    table = comparison_markdown(comparison)
    assert table.index("| 1 | Forklift |") < table.index("| 4 | pallet jack |")


def test_box_matching_needs_no_segmenter() -> None:
    scores = score_phrasings([sample(1)], PhraseDetector(), "forklift", ["forklift"], segment=None)
    (result,) = rank_phrasings(
        scores, Thresholds(box=0.35, text=0.35), metric="ap", iou_threshold=0.5
    )
    assert result.score.ap == 1.0
    assert result.score.mean_iou == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("phrasings", "message"),
    [
        ([], "at least 1"),
        (["fork . lift"], "without '.'"),
        (["forklift", "Forklift."], "distinct"),
        (["x" * 201], "at most 200"),
    ],
)
def test_bad_phrasings_are_refused(phrasings: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CompareRequest(dataset="ds", category="forklift", phrasings=phrasings)
