"""Thresholds, phrase assignment, NMS, duplicate policy and box limit on constructed logits."""

import numpy as np
import pytest
import torch

from autolabel.models.detection import Candidates, DetectionConfig, finalize_detections
from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.postprocess import chunk_candidates
from autolabel.models.prompts import PromptChunk, PromptSet

# "[CLS] red block . orange block . car . automobile . [SEP]" with made-up ids
PROMPT = PromptSet.from_categories({"red block": [], "orange block": [], "car": ["automobile"]})
CHUNK = PromptChunk(
    caption="red block . orange block . car . automobile .",
    input_ids=(101, 1, 2, 1012, 3, 2, 1012, 4, 1012, 5, 1012, 102),
    phrase_indices=(0, 1, 2, 3),
    spans=((1, 3), (4, 6), (7, 8), (9, 10)),
)


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def make_logits(rows: list[dict[int, float]], low: float = 0.01) -> torch.Tensor:
    out = torch.full((len(rows), len(CHUNK.input_ids)), logit(low))
    for q, row in enumerate(rows):
        for token, prob in row.items():
            out[q, token] = logit(prob)
    return out


def test_each_query_gets_the_phrase_with_the_best_token_not_a_merged_string() -> None:
    # positions: 1 red, 2 block, 3 ".", 4 orange, 5 block, 6 ".", 7 car, 8 ".", 9 automobile
    # query 0: "red" 0.4 and its "block" 0.7, "orange" 0.8: orange block wins, nothing is merged
    logits = make_logits([{1: 0.4, 2: 0.7, 4: 0.8}, {7: 0.6, 9: 0.5}])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])
    cands = chunk_candidates(logits, boxes, CHUNK, (100, 200), min_score=0.1)
    assert cands.phrase_indices.tolist() == [1, 2]
    torch.testing.assert_close(cands.phrase_scores, torch.tensor([0.8, 0.6]))
    torch.testing.assert_close(cands.token_scores[0], torch.tensor([0.8, 0.01]))
    torch.testing.assert_close(cands.boxes_xyxy_px[0], torch.tensor([80.0, 40.0, 120.0, 60.0]))


def test_box_score_includes_special_tokens_like_the_original() -> None:
    logits = make_logits([{0: 0.9, 7: 0.3}])
    cands = chunk_candidates(logits, torch.tensor([[0.5, 0.5, 0.2, 0.2]]), CHUNK, (10, 10), 0.1)
    torch.testing.assert_close(cands.box_scores, torch.tensor([0.9]))
    torch.testing.assert_close(cands.phrase_scores, torch.tensor([0.3]))


def make_candidates(
    boxes: list[list[float]], phrases: list[int], scores: list[float], box_scores: list[float]
) -> Candidates:
    return Candidates(
        boxes_xyxy_px=torch.tensor(boxes),
        box_scores=torch.tensor(box_scores),
        phrase_indices=torch.tensor(phrases),
        phrase_scores=torch.tensor(scores),
        token_scores=tuple(torch.tensor([s]) for s in scores),
    )


def test_box_and_text_thresholds_global_and_per_category() -> None:
    cands = make_candidates(
        [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]],
        [0, 1, 2, 3],
        [0.5, 0.2, 0.5, 0.45],
        [0.5, 0.5, 0.3, 0.45],
    )
    base = finalize_detections(cands, PROMPT, DetectionConfig(), (100, 100))
    # box 1: text 0.2 < 0.25; box 2: box score 0.3 < 0.35
    assert base.phrases == ("red block", "automobile")
    per_category = DetectionConfig(
        category_box_thresholds={"car": 0.25}, category_text_thresholds={"red block": 0.6}
    )
    out = finalize_detections(cands, PROMPT, per_category, (100, 100))
    assert out.phrases == ("car", "automobile")
    assert out.category_names == ("car", "car")
    assert out.category_ids.tolist() == [2, 2]


def test_unknown_category_threshold_is_rejected() -> None:
    config = DetectionConfig(category_box_thresholds={"bus": 0.5})
    with pytest.raises(InvalidInputError, match=r"unknown \['bus'\]"):
        config.thresholds(PROMPT)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"box_threshold": 1.5},
        {"nms_iou": -0.1},
        {"duplicate_policy": "merge"},
        {"max_detections": 0},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError, match="expected"):
        DetectionConfig(**kwargs)  # type: ignore[arg-type]


def test_synonyms_are_one_category_for_nms() -> None:
    # "car" and "automobile" on the same object: per-category NMS keeps one box
    cands = make_candidates([[0, 0, 10, 10], [0, 0, 10, 10.5]], [2, 3], [0.6, 0.7], [0.7, 0.7])
    out = finalize_detections(cands, PROMPT, DetectionConfig(), (100, 100))
    assert out.phrases == ("automobile",)
    assert out.category_names == ("car",)


def test_cross_category_keep_best_and_keep_both() -> None:
    boxes: list[list[float]] = [[0, 0, 10, 10], [0, 0, 10, 10.2], [50, 50, 60, 60]]
    cands = make_candidates(boxes, [0, 1, 1], [0.6, 0.7, 0.5], [0.7, 0.7, 0.5])
    best = finalize_detections(cands, PROMPT, DetectionConfig(), (100, 100))
    assert best.category_names == ("orange block", "orange block")
    assert best.duplicate_of.tolist() == [-1, -1]
    both = finalize_detections(
        cands, PROMPT, DetectionConfig(duplicate_policy="keep_both"), (100, 100)
    )
    assert both.category_names == ("orange block", "red block", "orange block")
    assert both.duplicate_of.tolist() == [-1, 0, -1]
    assert both.is_duplicate.tolist() == [False, True, False]
    loose = DetectionConfig(duplicate_iou=0.99)
    assert len(finalize_detections(cands, PROMPT, loose, (100, 100))) == 3


def test_max_detections_keeps_the_best_scores() -> None:
    boxes = [[i * 10.0, 0, i * 10.0 + 5, 5] for i in range(6)]
    scores = [0.4, 0.9, 0.5, 0.8, 0.6, 0.7]
    cands = make_candidates(boxes, [0] * 6, scores, scores)
    out = finalize_detections(cands, PROMPT, DetectionConfig(max_detections=3), (100, 100))
    np.testing.assert_allclose(out.scores, [0.9, 0.8, 0.7])
    assert out.boxes_xyxy_px.dtype == np.float32
    assert out.boxes_xyxy_px.shape == (3, 4)


def test_no_candidates_give_empty_detections() -> None:
    cands = make_candidates([[0, 0, 1, 1]], [0], [0.1], [0.1])
    out = finalize_detections(cands, PROMPT, DetectionConfig(), (7, 9))
    assert len(out) == 0
    assert out.boxes_xyxy_px.shape == (0, 4)
    assert out.image_hw == (7, 9)
