"""Threshold tuning on constructed samples: known-good thresholds are found and F1 rises; AP;
ties go to the higher thresholds; categories without reviewed labels keep theirs."""

import pytest

from autolabel.models.detection import DetectionConfig
from autolabel.tasks.tuning.overlap import ReviewedObject, score_image
from autolabel.tasks.tuning.sample_scoring import floor_config
from autolabel.tasks.tuning.scores import (
    CategoryEvaluator,
    CategoryScores,
    ImageScores,
    ScoredSample,
)
from autolabel.tasks.tuning.thresholds import (
    GRID,
    Thresholds,
    TuningReport,
    current_thresholds,
    report_markdown,
    tune_category,
    tune_thresholds,
    tuned_rows,
)
from tests.unit.tasks.tuning.constructed import (
    PROMPT,
    ConstructedImage,
    constructed_images,
    detect,
    true_min_box_score,
)

NAMES = {c: c for c in PROMPT.categories}


def scored(images: list[ConstructedImage], config: DetectionConfig) -> ScoredSample:
    return ScoredSample(
        images=[
            score_image(i.image_id, detect(i, config), None, i.reviewed, categories=NAMES)
            for i in images
        ],
        match_by="box",
    )


def pipeline_f1(images: list[ConstructedImage], config: DetectionConfig) -> dict[str, float]:
    """F1 per category of the labels the pipeline itself keeps under `config`."""
    sample = scored(images, config)
    return {
        c: CategoryEvaluator(sample.of_category(c), 0.5).score(0.0, 0.0).f1
        for c in PROMPT.categories
    }


def tuned_config(tuned: dict[str, Thresholds]) -> DetectionConfig:
    return DetectionConfig(
        category_box_thresholds={c: t.box for c, t in tuned.items()},
        category_text_thresholds={c: t.text for c, t in tuned.items()},
    )


def test_tuning_finds_the_known_good_thresholds_and_raises_f1() -> None:
    images = constructed_images()
    default = DetectionConfig()  # box 0.35, text 0.25
    sample = scored(images, floor_config(default))
    current = current_thresholds(default, PROMPT.categories)
    result = tune_thresholds(sample, current, metric="f1", iou_threshold=0.5)
    a, b = result
    assert (a.category, b.category) == ("a", "b")
    assert a.after_thresholds.text == pytest.approx(0.60)
    assert b.after_thresholds.text == pytest.approx(0.20)
    for tuning in (a, b):
        best_box = true_min_box_score(images, tuning.category)
        assert best_box - 0.05 < tuning.after_thresholds.box <= best_box
        assert tuning.changed
        assert tuning.before.f1 < tuning.after.f1 == 1.0
    # "a": every distractor passes the defaults; "b": true objects below text 0.25 are missed.
    assert (a.before.tp, a.before.fp, a.before.fn) == (60, 60, 0)
    assert (a.after.tp, a.after.fp, a.after.fn) == (60, 0, 0)
    assert b.before.fp == 0
    assert b.before.fn > 0
    assert (b.after.tp, b.after.fp, b.after.fn) == (60, 0, 0)
    assert a.before.f1 == pytest.approx(2 / 3)
    # The pipeline itself, run at the tuned thresholds, labels better than at the defaults.
    before = pipeline_f1(images, default)
    after = pipeline_f1(images, tuned_config({t.category: t.after_thresholds for t in result}))
    assert before["a"] == pytest.approx(a.before.f1)
    assert before["b"] == pytest.approx(b.before.f1)
    assert after == {"a": 1.0, "b": 1.0}


def test_ap_tuning_lowers_the_text_threshold_only_where_recall_is_missing() -> None:
    images = constructed_images(seed=1)
    default = DetectionConfig()
    sample = scored(images, floor_config(default))
    current = current_thresholds(default, PROMPT.categories)
    a, b = tune_thresholds(sample, current, metric="ap", iou_threshold=0.5)
    # "a": its true objects outrank its distractors, so AP is already perfect: kept.
    assert a.before.ap == pytest.approx(1.0)
    assert not a.changed
    assert a.after_thresholds == a.before_thresholds
    assert a.note is not None
    assert "kept" in a.note
    # "b": missed objects cap AP; the highest text threshold that finds them all is 0.20
    # (lower ones only append distractors after every true object: the same AP).
    assert b.before.ap < b.after.ap == pytest.approx(1.0)
    assert b.after_thresholds.text == pytest.approx(0.20)


def _one_image(*candidates: tuple[float, float, float], labels: int = 1) -> ScoredSample:
    """Candidates (box score, text score, IoU with label 0) of one category "c" in one image."""
    scores = CategoryScores(
        box_scores=[c[0] for c in candidates],
        text_scores=[c[1] for c in candidates],
        ious=[[c[2]] + [0.0] * (labels - 1) for c in candidates],
        labels=labels,
    )
    return ScoredSample(images=[ImageScores(image_id=1, categories={"c": scores})], match_by="box")


def test_ties_go_to_the_higher_thresholds() -> None:
    # One true box (box 0.52, text 0.43): F1 = 1 at every box <= 0.50 and text <= 0.40.
    sample = _one_image((0.52, 0.43, 0.9))
    (tuning,) = tune_thresholds(
        sample, {"c": Thresholds(box=0.6, text=0.6)}, metric="f1", iou_threshold=0.5
    )
    assert tuning.before.f1 == 0.0
    assert tuning.after_thresholds == Thresholds(box=0.50, text=0.40)
    assert tuning.after.f1 == 1.0


def test_no_gain_keeps_the_thresholds_even_off_the_grid() -> None:
    sample = _one_image((0.52, 0.43, 0.9))
    current = Thresholds(box=0.33, text=0.21)
    tuning = tune_category("c", sample.of_category("c"), current, metric="f1", iou_threshold=0.5)
    assert tuning.before.f1 == tuning.after.f1 == 1.0
    assert tuning.after_thresholds == current
    assert not tuning.changed


def test_greedy_matching_is_one_to_one_by_text_score() -> None:
    # Two candidates on one label: the higher text score takes it, the other is a false
    # positive, unless thresholds drop the first.
    sample = _one_image((0.9, 0.8, 0.6), (0.9, 0.5, 0.95))
    evaluator = CategoryEvaluator(sample.of_category("c"), 0.5)
    both = evaluator.score(0.1, 0.1)
    assert (both.tp, both.fp, both.fn) == (1, 1, 0)
    assert both.mean_iou == pytest.approx(0.6)
    assert evaluator.score(0.1, 0.1).ap == pytest.approx(1.0)
    strict = CategoryEvaluator(sample.of_category("c"), 0.7).score(0.1, 0.1)
    assert (strict.tp, strict.fp) == (1, 1)  # the first misses 0.7; the second takes the label
    assert strict.ap == pytest.approx(0.5)


def test_categories_without_reviewed_labels_keep_their_thresholds() -> None:
    # "c" has candidates but no labels, "d" neither; "e" is tuned as usual.
    c = CategoryScores(box_scores=[0.9], text_scores=[0.8], ious=[[]], labels=0)
    e = CategoryScores(box_scores=[0.5], text_scores=[0.3], ious=[[0.9]], labels=1)
    sample = ScoredSample(images=[ImageScores(image_id=1, categories={"c": c, "e": e})])
    current = {name: Thresholds(box=0.35, text=0.35) for name in ("c", "d", "e")}
    tuned = {
        t.category: t for t in tune_thresholds(sample, current, metric="f1", iou_threshold=0.5)
    }
    for name in ("c", "d"):
        assert not tuned[name].changed
        assert tuned[name].after_thresholds == current[name]
        assert tuned[name].note == "no reviewed labels in the sample: thresholds kept"
    assert (tuned["c"].candidates, tuned["c"].before.fp) == (1, 1)
    assert (tuned["d"].candidates, tuned["d"].labels) == (0, 0)
    assert tuned["e"].changed
    assert tuned["e"].after_thresholds == Thresholds(box=0.5, text=0.3)

    report = TuningReport(
        dataset="ds",
        run_id=3,
        metric="f1",
        iou_threshold=0.5,
        match_by="box",
        images=1,
        categories=list(tuned.values()),
    )
    rows = tuned_rows(report)
    assert [r.category for r in rows] == ["e"]
    assert (rows[0].box_threshold, rows[0].text_threshold) == (0.5, 0.3)
    assert rows[0].metric == "f1@0.5/box"
    assert rows[0].before["box_threshold"] == 0.35
    assert rows[0].after["f1"] == 1.0
    table = report_markdown(report)
    assert "| e | 1 | 0.35 | 0.35 | 0/0/1 | 0.000 | -> | 0.50 | 0.30 | 1/0/0 | 1.000 |" in table


def test_grid_and_reviewed_objects_from_boxes() -> None:
    assert GRID[0] == 0.05
    assert GRID[-1] == 0.95
    assert len(GRID) == 19
    # Labels of categories the detections do not name are still counted (as misses).
    image = constructed_images(1)[0]
    det = detect(image, DetectionConfig(box_threshold=0.99, text_threshold=0.99))
    extra = [*image.reviewed, ReviewedObject(category="b", box_xyxy_px=(0, 0, 5, 5))]
    scores = score_image(7, det, None, extra, categories=NAMES)
    assert scores.categories["b"].labels == 3
    assert scores.categories["b"].text_scores == []
