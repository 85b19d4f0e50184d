"""Per-category threshold tuning: a grid search of (box, text) thresholds on a reviewed sample.

For each category of the job, every pair of `GRID` x `GRID` (box and text thresholds 0.05, 0.10,
..., 0.95: 361 pairs) is evaluated on the sample's scores (`autolabel.tasks.tuning.scores`) and
the pair that maximises the metric (F1 at the IoU threshold, or AP) is chosen:

- the thresholds in use are kept unless some grid pair scores strictly better (no change without
  a gain);
- among the grid pairs with the best score, the higher thresholds win (the largest box + text,
  then the largest text threshold): the fewest boxes for the same quality;
- a category without reviewed labels in the sample keeps its thresholds (its candidates would all
  be false positives, too little evidence to silence it).

Categories are tuned one at a time: per-category NMS is the pipeline's (applied once at the low
floor the candidates were collected at), while cross-category duplicates and the per-image box
limit are not simulated.
"""

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from autolabel.models.detection import DetectionConfig
from autolabel.storage.db.category_thresholds import TunedThreshold
from autolabel.tasks.tuning.sample_scoring import SampleOutcome, SampleRequest, TuningSource
from autolabel.tasks.tuning.scores import (
    CategoryEvaluator,
    CategoryScores,
    Metric,
    Score,
    ScoredSample,
)

GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Box and text thresholds tried: 0.05 to 0.95 in steps of 0.05."""


class Thresholds(BaseModel):
    """A category's box and text thresholds."""

    model_config = ConfigDict(frozen=True)

    box: float = Field(ge=0.0, le=1.0)
    text: float = Field(ge=0.0, le=1.0)


class TuneRequest(SampleRequest):
    """Tune a dataset's thresholds on its reviewed sample."""

    metric: Metric = Field("f1", description="f1 (F1 at the IoU threshold) or ap.")
    dry_run: bool = Field(False, description="Report only; store nothing.")


class CategoryTuning(BaseModel):
    """What tuning chose for one category, and the metric before and after.

    Attributes:
        labels: Reviewed labels of the category in the sample.
        candidates: Its candidate boxes at the floor thresholds.
        changed: Whether the chosen thresholds differ from those in use.
        note: Why the thresholds were kept, when they were.
    """

    model_config = ConfigDict(frozen=True)

    category: str
    labels: int
    candidates: int
    before_thresholds: Thresholds
    after_thresholds: Thresholds
    before: Score
    after: Score
    changed: bool
    note: str | None = None


class TuningReport(SampleOutcome):
    """The outcome of tuning a dataset's thresholds on its reviewed sample."""

    categories: list[CategoryTuning] = Field(default_factory=list)
    stored: bool = False

    @property
    def metric_name(self) -> str:
        """The metric as stored with the thresholds, e.g. `f1@0.5/mask`."""
        return f"{self.metric}@{self.iou_threshold:g}/{self.match_by}"


def current_thresholds(config: DetectionConfig, categories: Sequence[str]) -> dict[str, Thresholds]:
    """The thresholds `config` applies to each category (its own, else the global ones)."""
    return {
        c: Thresholds(
            box=config.category_box_thresholds.get(c, config.box_threshold),
            text=config.category_text_thresholds.get(c, config.text_threshold),
        )
        for c in categories
    }


def tune_category(
    category: str,
    scores: Sequence[CategoryScores],
    current: Thresholds,
    *,
    metric: Metric,
    iou_threshold: float,
    grid: Sequence[float] = GRID,
) -> CategoryTuning:
    """Choose one category's thresholds on its scores (see the module docstring).

    Args:
        category: Category name.
        scores: Its scores in each sampled image.
        current: The thresholds in use.
        metric: "f1" (F1 at `iou_threshold`) or "ap" (AP at `iou_threshold`).
        iou_threshold: Least IoU for a candidate to match a reviewed label.
        grid: Threshold values tried for both the box and the text threshold.
    """
    evaluator = CategoryEvaluator(scores, iou_threshold)
    before = evaluator.score(current.box, current.text)
    kept = {
        "category": category,
        "labels": evaluator.labels,
        "candidates": evaluator.candidates,
        "before_thresholds": current,
        "before": before,
    }
    if evaluator.labels == 0:
        note = "no reviewed labels in the sample: thresholds kept"
        return CategoryTuning(
            **kept, after_thresholds=current, after=before, changed=False, note=note
        )
    key, best, best_score = max(
        (
            ((score.value(metric), box + text, text), Thresholds(box=box, text=text), score)
            for box in grid
            for text in grid
            for score in (evaluator.score(box, text),)
        ),
        key=lambda option: option[0],
    )
    if key[0] <= before.value(metric):
        note = "no grid thresholds score better: thresholds kept"
        return CategoryTuning(
            **kept, after_thresholds=current, after=before, changed=False, note=note
        )
    return CategoryTuning(**kept, after_thresholds=best, after=best_score, changed=best != current)


def tune_thresholds(
    sample: ScoredSample,
    current: Mapping[str, Thresholds],
    *,
    metric: Metric,
    iou_threshold: float,
    grid: Sequence[float] = GRID,
) -> list[CategoryTuning]:
    """Tune every category of `current` (name -> thresholds in use) on `sample`, in order."""
    return [
        tune_category(
            category,
            sample.of_category(category),
            thresholds,
            metric=metric,
            iou_threshold=iou_threshold,
            grid=grid,
        )
        for category, thresholds in current.items()
    ]


def tuning_report(request: TuneRequest, source: TuningSource, sample: ScoredSample) -> TuningReport:
    """Tune every category of the source's job on the scored sample (nothing stored)."""
    current = current_thresholds(source.job.thresholds, source.job.prompt_set().categories)
    return TuningReport(
        dataset=request.dataset,
        run_id=source.run_id,
        metric=request.metric,
        iou_threshold=request.iou_threshold,
        match_by=sample.match_by,
        images=len(sample.images),
        skipped=sample.skipped,
        categories=tune_thresholds(
            sample, current, metric=request.metric, iou_threshold=request.iou_threshold
        ),
    )


def tuned_rows(report: TuningReport) -> list[TunedThreshold]:
    """The rows to store: the categories whose thresholds changed."""
    return [
        TunedThreshold(
            category=c.category,
            box_threshold=c.after_thresholds.box,
            text_threshold=c.after_thresholds.text,
            metric=report.metric_name,
            before={**c.before.model_dump(), **_prefixed(c.before_thresholds)},
            after={**c.after.model_dump(), **_prefixed(c.after_thresholds)},
            sample_images=report.images,
        )
        for c in report.categories
        if c.changed
    ]


def _prefixed(thresholds: Thresholds) -> dict[str, float]:
    return {"box_threshold": thresholds.box, "text_threshold": thresholds.text}


def report_markdown(report: TuningReport) -> str:
    """The before/after table of a tuning report, as Markdown (the flow's artifact)."""
    stored = "stored" if report.stored else "not stored (dry run)"
    lines = [
        f"# Thresholds of `{report.dataset}`: {report.metric_name}",
        "",
        f"{report.images} reviewed images (run {report.run_id}'s job); {stored}.",
        "",
        "| category | labels | box | text | TP/FP/FN | metric | | box | text | TP/FP/FN | metric |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for c in report.categories:
        b, a = c.before, c.after
        lines.append(
            f"| {c.category} | {c.labels} | {c.before_thresholds.box:.2f} | "
            f"{c.before_thresholds.text:.2f} | {b.tp}/{b.fp}/{b.fn} | "
            f"{b.value(report.metric):.3f} | -> | {c.after_thresholds.box:.2f} | "
            f"{c.after_thresholds.text:.2f} | {a.tp}/{a.fp}/{a.fn} | {a.value(report.metric):.3f} |"
        )
    if report.skipped:
        lines += ["", f"Reviewed images not scored, by reason: {report.skipped}"]
    return "\n".join(lines) + "\n"
