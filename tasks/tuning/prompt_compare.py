"""Prompt comparison: which phrasing of a category recovers its reviewed labels best.

Each phrasing is sent to the job's detector alone (one pass per phrasing, so phrasings never
compete for boxes) on the reviewed sample, at the floor thresholds (see `sample_scoring`); its
candidates count as the category and are matched to the category's reviewed labels. A phrasing is
judged at the thresholds the category has now (precision, recall, F1, AP, mean IoU of the
matches), and also at the grid thresholds that would suit it best (`thresholds.tune_category`),
since a phrasing may score on another scale. The ranking is by the metric at the current
thresholds, then AP, then mean matched IoU, then the metric at its own best thresholds, best
first.
"""

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autolabel.models.detection import Detector
from autolabel.models.errors import InvalidInputError
from autolabel.models.prompts import PromptSet, normalize_phrase
from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.reviewed_labels import reviewed_labels
from autolabel.tasks.resources import Resources
from autolabel.tasks.tuning.sample_scoring import (
    SampleImage,
    SampleOutcome,
    SampleRequest,
    Segmenter,
    TuningInputError,
    TuningSource,
    floor_detector,
    job_segmenter,
    sample_batches,
    score_batch,
)
from autolabel.tasks.tuning.scores import CategoryScores, Metric, Score
from autolabel.tasks.tuning.thresholds import Thresholds, current_thresholds, tune_category

MAX_PHRASINGS = 20


class CompareRequest(SampleRequest):
    """Phrasings of one category to compare on a dataset's reviewed sample."""

    category: str = Field(min_length=1, max_length=200, description="The category compared.")
    phrasings: list[str] = Field(
        min_length=1, max_length=MAX_PHRASINGS, description="Alternative phrasings of it."
    )
    metric: Metric = Field("f1", description="Ranking metric at the current thresholds.")

    @field_validator("phrasings")
    @classmethod
    def _check_phrasings(cls, value: list[str]) -> list[str]:
        for phrasing in value:
            if len(phrasing) > 200:
                raise ValueError(f"expected phrasings of at most 200 characters, got {phrasing!r}")
            try:
                phrasing_prompt(phrasing)
            except InvalidInputError as exc:
                raise ValueError(str(exc)) from exc
        normalized = [normalize_phrase(p) for p in value]
        if len(set(normalized)) != len(normalized):
            raise ValueError(f"expected distinct phrasings, got {value}")
        return value


class PhrasingResult(BaseModel):
    """How one phrasing recovers the category's reviewed labels."""

    model_config = ConfigDict(frozen=True)

    phrasing: str
    score: Score = Field(description="At the category's current thresholds.")
    best_thresholds: Thresholds = Field(description="The grid thresholds that suit it best.")
    best_score: Score = Field(description="At those thresholds.")


class PromptComparison(SampleOutcome):
    """Phrasings of a category, best first."""

    category: str
    thresholds: Thresholds = Field(description="The category's current thresholds.")
    labels: int = Field(description="Reviewed labels of the category in the sample.")
    results: list[PhrasingResult] = Field(default_factory=list)

    @property
    def best(self) -> PhrasingResult:
        """The phrasing that recovers the reviewed labels best."""
        return self.results[0]


def phrasing_prompt(phrasing: str) -> PromptSet:
    """A prompt of the phrasing alone (its one category is the normalized phrasing).

    Raises:
        InvalidInputError: An empty phrasing, or one containing "." or "?".
    """
    return PromptSet.from_categories([phrasing])


def rank_phrasings(
    scores: dict[str, list[CategoryScores]],
    current: Thresholds,
    *,
    metric: Metric,
    iou_threshold: float,
) -> list[PhrasingResult]:
    """Judge each phrasing's scores (phrasing -> per-image scores of the category), best first."""
    results = []
    for phrasing, per_image in scores.items():
        tuned = tune_category(
            phrasing, per_image, current, metric=metric, iou_threshold=iou_threshold
        )
        results.append(
            PhrasingResult(
                phrasing=phrasing,
                score=tuned.before,
                best_thresholds=tuned.after_thresholds,
                best_score=tuned.after,
            )
        )
    return sorted(
        results,
        key=lambda r: (
            r.score.value(metric),
            r.score.ap,
            r.score.mean_iou or 0.0,
            r.best_score.value(metric),
        ),
        reverse=True,
    )


def score_phrasings(
    batches: Iterable[Sequence[SampleImage]],
    detector: Detector,
    category: str,
    phrasings: Sequence[str],
    *,
    segment: Segmenter | None,
) -> dict[str, list[CategoryScores]]:
    """Detect each phrasing on every batch (images read once) and score its candidates against
    the category's reviewed labels: phrasing -> per-image scores."""
    prompts = {p: phrasing_prompt(p) for p in phrasings}
    out: dict[str, list[CategoryScores]] = {p: [] for p in phrasings}
    for batch in batches:
        for phrasing, prompt in prompts.items():
            named = {prompt.categories[0]: category}
            for image in score_batch(batch, detector, prompt, categories=named, segment=segment):
                if category in image.categories:
                    out[phrasing].append(image.categories[category])
    return out


def check_category(source: TuningSource, category: str, resources: Resources) -> int:
    """The number of reviewed labels of `category` in the sample.

    Raises:
        TuningInputError: The dataset has no such category, or the sample no label of it.
    """
    with session_scope(resources.engine) as session:
        if queries.find_category(session, dataset_id=source.dataset_id, name=category) is None:
            raise TuningInputError(
                f"expected a category of dataset {source.job.dataset!r}, got {category!r}"
            )
        labels = reviewed_labels(session, dataset_id=source.dataset_id, image_ids=source.image_ids)
    count = sum(1 for found in labels.values() for label in found if label.category == category)
    if count == 0:
        raise TuningInputError(
            f"expected reviewed labels of {category!r} in the sample of dataset "
            f"{source.job.dataset!r}, found none"
        )
    return count


def compare_prompts(
    request: CompareRequest, source: TuningSource, resources: Resources
) -> PromptComparison:
    """Run each phrasing of `request.category` on the reviewed sample and rank them."""
    category = normalize_phrase(request.category)
    labels = check_category(source, category, resources)
    job = source.job
    current = current_thresholds(job.thresholds, [category])[category]
    skipped: dict[str, int] = {}
    batches = sample_batches(source, resources, match_by=request.match_by, skipped=skipped)
    segment = job_segmenter(job, resources) if request.match_by == "mask" else None
    scores = score_phrasings(
        batches, floor_detector(job, resources), category, request.phrasings, segment=segment
    )
    results = rank_phrasings(
        scores, current, metric=request.metric, iou_threshold=request.iou_threshold
    )
    return PromptComparison(
        dataset=request.dataset,
        category=category,
        run_id=source.run_id,
        metric=request.metric,
        thresholds=current,
        iou_threshold=request.iou_threshold,
        match_by=request.match_by,
        images=len(source.image_ids) - sum(skipped.values()),
        labels=labels,
        skipped=skipped,
        results=results,
    )


def comparison_markdown(comparison: PromptComparison) -> str:
    """The ranking as Markdown (the flow's artifact)."""
    c = comparison
    lines = [
        f"# Phrasings of `{c.category}` in `{c.dataset}`",
        "",
        f"{c.images} reviewed images, {c.labels} labels; thresholds box {c.thresholds.box:.2f}, "
        f"text {c.thresholds.text:.2f}; {c.match_by} IoU >= {c.iou_threshold:g}.",
        "",
        "| rank | phrasing | precision | recall | F1 | AP | mean IoU | best box/text | "
        f"best {c.metric} |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rank, r in enumerate(c.results, start=1):
        s = r.score
        iou = f"{s.mean_iou:.3f}" if s.mean_iou is not None else "-"
        lines.append(
            f"| {rank} | {r.phrasing} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | "
            f"{s.ap:.3f} | {iou} | {r.best_thresholds.box:.2f}/{r.best_thresholds.text:.2f} | "
            f"{r.best_score.value(c.metric):.3f} |"
        )
    return "\n".join(lines) + "\n"
