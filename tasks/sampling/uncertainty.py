"""Uncertainty sampling: which images (or annotations) are most worth a reviewer's time.

Every annotation gets five signals in [0, 1], 1 meaning most uncertain:

| signal | from | value in [0, 1] |
|---|---|---|
| `predicted_iou` | the segmenter's IoU prediction p | 1 - clip(p, 0, 1) |
| `stability` | the mask's stability score s | 1 - clip(s, 0, 1) |
| `detector_score` | score d, its box threshold t, margin m | clip(1 - (d - t) / m, 0, 1) |
| `box_mask` | stored box B, tight box M of the mask | 1 - IoU(B, M) (1: empty mask) |
| `rarity` | n_c of its category, n_max of the commonest | log(n_max / n_c) / log(n_max) |

`detector_score` is 1 at the threshold and 0 from t + m up (t: the run's recorded threshold for
the category, else `default_score_threshold`). `rarity` is inverse frequency on a log scale (as
IDF), counted over the annotations being sampled: 1 for a category seen once, 0 for the commonest.

- Annotation uncertainty: the weighted mean of the signals it has (a missing score, IoU or
  stability is left out and the other weights renormalised); 0 for an annotation a reviewer
  accepted. Its *driver* is the signal with the largest weighted share, w_i * u_i.
- Image score: the mean of its `top_k` highest annotation uncertainties (default 1: the maximum);
  its driver is that of its most uncertain annotation.
- Choice: `unit="images"` takes the `budget` best images; `unit="annotations"` takes images in
  score order while their annotations fit the remaining budget (one that does not fit is
  skipped). With `min_per_category` m, first each category (rarest first) gets its m best images
  containing it, as far as the budget allows; the rest of the budget goes by score. Ties break
  by image id, so the same rows and policy always give the same choice.
"""

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autolabel.storage.db.sampling_rows import BoxXywh, SignalRow

Signal = Literal["predicted_iou", "stability", "detector_score", "box_mask", "rarity"]
SIGNALS: tuple[Signal, ...] = ("predicted_iou", "stability", "detector_score", "box_mask", "rarity")
SampleUnit = Literal["images", "annotations"]
MAX_SELECTED = 50_000  # images in one selection (a review set, and one SQL IN list)
ACCEPTED = "accepted"  # the driver of an annotation a reviewer accepted


class SignalWeights(BaseModel):
    """Weight of each signal in an annotation's uncertainty (0 turns a signal off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    predicted_iou: float = Field(1.0, ge=0, le=1000, description="Low segmenter predicted IoU.")
    stability: float = Field(1.0, ge=0, le=1000, description="Low mask stability score.")
    detector_score: float = Field(
        1.0, ge=0, le=1000, description="Detector score just above its threshold."
    )
    box_mask: float = Field(1.0, ge=0, le=1000, description="Stored box and mask box disagree.")
    rarity: float = Field(1.0, ge=0, le=1000, description="Rare category in the selection.")

    @model_validator(mode="after")
    def _one_positive(self) -> "SignalWeights":
        if not any(getattr(self, name) > 0 for name in SIGNALS):
            raise ValueError("expected at least one positive weight, got all zero")
        return self

    @classmethod
    def parse(cls, text: str) -> "SignalWeights":
        """Weights from `name=value[,name=value...]`; unnamed signals keep their default."""
        values: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"expected weights as name=value[,name=value], got {item!r}")
            values[name.strip()] = value.strip()
        return cls.model_validate(values)


class SamplingPolicy(BaseModel):
    """How much to choose and how to score it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: int = Field(ge=1, le=MAX_SELECTED, description="Images, or annotations, to choose.")
    unit: SampleUnit = Field("images", description="What the budget counts.")
    weights: SignalWeights = Field(default_factory=SignalWeights)
    top_k: int = Field(1, ge=1, le=100, description="Image score: mean of its k most uncertain.")
    score_margin: float = Field(
        0.1, gt=0, le=1, description="Detector scores within this of the threshold are uncertain."
    )
    default_score_threshold: float = Field(
        0.35, ge=0, lt=1, description="Box threshold where the run recorded none."
    )
    min_per_category: int = Field(
        0, ge=0, le=1000, description="Images reserved for each category, rarest first."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnotationUncertainty:
    """One annotation's uncertainty in [0, 1], its driver and its signals (each in [0, 1])."""

    annotation_id: int
    value: float
    driver: str
    signals: Mapping[str, float]


@dataclass(slots=True, kw_only=True)
class ImageCandidate:
    """An image as scored: `score` in [0, 1], its most uncertain annotation, its categories."""

    image_id: int
    storage_key: str
    score: float
    top: AnnotationUncertainty
    n_annotations: int
    category_ids: frozenset[int]


class ChosenImage(BaseModel):
    """One image of a selection, and why it was chosen."""

    model_config = ConfigDict(frozen=True)

    image_id: int
    storage_key: str
    score: float = Field(description="Image score in [0, 1].")
    driver: str = Field(description="The signal that drove it (of its most uncertain annotation).")
    annotation_id: int = Field(description="Its most uncertain annotation.")
    signals: dict[str, float] = Field(description="That annotation's signals, each in [0, 1].")
    annotations: int = Field(description="Annotations of the image that were scored.")
    categories: list[str]
    picked_for: str = Field(description="`score`, or `category:<name>` for a reserved image.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The chosen images (best first) and what was scored."""

    chosen: list[ChosenImage]
    scored_images: int
    scored_annotations: int
    budget_used: int


def rarity(counts: Mapping[int, int]) -> dict[int, float]:
    """Rarity in [0, 1] of each category id from its annotation count (see module docstring)."""
    n_max = max(counts.values(), default=0)
    if n_max <= 1:
        return dict.fromkeys(counts, 0.0)
    return {c: math.log(n_max / max(n, 1)) / math.log(n_max) for c, n in counts.items()}


def _iou(a: BoxXywh, b: BoxXywh) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = max(aw, 0.0) * max(ah, 0.0) + max(bw, 0.0) * max(bh, 0.0) - inter
    return inter / union if union > 0 else 0.0


def _clip(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def signals(row: SignalRow, *, rarity: float, policy: SamplingPolicy) -> dict[str, float]:
    """The signals `row` has, each in [0, 1] (absent: a score, IoU or stability not stored)."""
    out: dict[str, float] = {}
    if row.predicted_iou is not None:
        out["predicted_iou"] = 1.0 - _clip(row.predicted_iou)
    if row.stability_score is not None:
        out["stability"] = 1.0 - _clip(row.stability_score)
    if row.score is not None:
        threshold = row.score_threshold
        if threshold is None:
            threshold = policy.default_score_threshold
        out["detector_score"] = _clip(1.0 - (row.score - threshold) / policy.score_margin)
    empty = row.mask_bbox_xywh_px[2] <= 0 or row.mask_bbox_xywh_px[3] <= 0
    if row.box_iou is not None:  # the detector's box against the mask's, as labeled
        out["box_mask"] = 1.0 - _clip(row.box_iou)
    else:
        out["box_mask"] = 1.0 if empty else 1.0 - _iou(row.bbox_xywh_px, row.mask_bbox_xywh_px)
    out["rarity"] = _clip(rarity)
    return out


def annotation_uncertainty(
    row: SignalRow, *, rarity: float, policy: SamplingPolicy
) -> AnnotationUncertainty:
    """The weighted mean of `row`'s signals and its driver (0 and `accepted` if accepted)."""
    values = signals(row, rarity=rarity, policy=policy)
    if row.accepted:
        return AnnotationUncertainty(
            annotation_id=row.annotation_id, value=0.0, driver=ACCEPTED, signals=values
        )
    weights = policy.weights
    shares = {name: getattr(weights, name) * value for name, value in values.items()}
    total = sum(getattr(weights, name) for name in values)
    driver = max(SIGNALS, key=lambda name: (shares.get(name, -1.0), -SIGNALS.index(name)))
    return AnnotationUncertainty(
        annotation_id=row.annotation_id,
        value=sum(shares.values()) / total if total > 0 else 0.0,
        driver=driver,
        signals=values,
    )


@dataclass(slots=True)
class _Image:
    storage_key: str
    top: list[tuple[float, int]] = field(default_factory=list)  # min-heap of the top_k values
    best: AnnotationUncertainty | None = None
    n_annotations: int = 0
    category_ids: set[int] = field(default_factory=set)


def score_images(
    rows: Iterable[SignalRow], *, counts: Mapping[int, int], policy: SamplingPolicy
) -> tuple[list[ImageCandidate], int]:
    """Score every image of `rows` (any order); returns (candidates by image id, annotations).

    `counts` are the annotations per category id over the same selection (for `rarity`).
    Memory holds one small record per image, never the rows.
    """
    rare = rarity(counts)
    images: dict[int, _Image] = {}
    n_rows = 0
    for row in rows:
        n_rows += 1
        u = annotation_uncertainty(row, rarity=rare.get(row.category_id, 0.0), policy=policy)
        image = images.setdefault(row.image_id, _Image(row.storage_key))
        image.n_annotations += 1
        image.category_ids.add(row.category_id)
        key = (u.value, -u.annotation_id)  # ties: the lower annotation id ranks first
        if len(image.top) < policy.top_k:
            heapq.heappush(image.top, key)
        else:
            heapq.heappushpop(image.top, key)
        if image.best is None or key > (image.best.value, -image.best.annotation_id):
            image.best = u
    candidates = [
        ImageCandidate(
            image_id=image_id,
            storage_key=image.storage_key,
            score=sum(v for v, _ in image.top) / len(image.top),
            top=image.best,
            n_annotations=image.n_annotations,
            category_ids=frozenset(image.category_ids),
        )
        for image_id, image in sorted(images.items())
        if image.best is not None
    ]
    return candidates, n_rows


class _Picker:
    """Takes candidates while the budget lasts, counting how many each category got."""

    def __init__(self, policy: SamplingPolicy) -> None:
        self.unit = policy.unit
        self.remaining = policy.budget
        self.picked: dict[int, tuple[ImageCandidate, str]] = {}
        self.per_category: dict[int, int] = {}

    def cost(self, candidate: ImageCandidate) -> int:
        return 1 if self.unit == "images" else candidate.n_annotations

    def take(self, candidate: ImageCandidate, reason: str) -> bool:
        if candidate.image_id in self.picked or self.cost(candidate) > self.remaining:
            return False
        self.picked[candidate.image_id] = (candidate, reason)
        self.remaining -= self.cost(candidate)
        for category_id in candidate.category_ids:
            self.per_category[category_id] = self.per_category.get(category_id, 0) + 1
        return True


def _reserve(
    picker: _Picker,
    order: Sequence[ImageCandidate],
    *,
    minimum: int,
    counts: Mapping[int, int],
    names: Mapping[int, str],
) -> None:
    by_category: dict[int, list[ImageCandidate]] = {}
    for candidate in order:
        for category_id in candidate.category_ids:
            by_category.setdefault(category_id, []).append(candidate)
    rarest_first = sorted(by_category, key=lambda c: (counts.get(c, 0), names.get(c, ""), c))
    for category_id in rarest_first:
        reason = f"category:{names.get(category_id, category_id)}"
        for candidate in by_category[category_id]:
            if picker.remaining == 0 or picker.per_category.get(category_id, 0) >= minimum:
                break
            picker.take(candidate, reason)


def _chosen(candidate: ImageCandidate, reason: str, names: Mapping[int, str]) -> ChosenImage:
    return ChosenImage(
        image_id=candidate.image_id,
        storage_key=candidate.storage_key,
        score=round(candidate.score, 6),
        driver=candidate.top.driver,
        annotation_id=candidate.top.annotation_id,
        signals={k: round(v, 6) for k, v in candidate.top.signals.items()},
        annotations=candidate.n_annotations,
        categories=sorted(names.get(c, str(c)) for c in candidate.category_ids),
        picked_for=reason,
    )


def choose(
    candidates: Sequence[ImageCandidate],
    *,
    policy: SamplingPolicy,
    counts: Mapping[int, int],
    names: Mapping[int, str],
    scored_annotations: int = 0,
) -> Choice:
    """Choose within the policy's budget (see the module docstring); best first."""
    order = sorted(candidates, key=lambda c: (-c.score, c.image_id))
    picker = _Picker(policy)
    if policy.min_per_category:
        _reserve(picker, order, minimum=policy.min_per_category, counts=counts, names=names)
    for candidate in order:
        if picker.remaining == 0:
            break
        picker.take(candidate, "score")
    picked = sorted(picker.picked.values(), key=lambda p: (-p[0].score, p[0].image_id))
    return Choice(
        chosen=[_chosen(candidate, reason, names) for candidate, reason in picked],
        scored_images=len(candidates),
        scored_annotations=scored_annotations,
        budget_used=policy.budget - picker.remaining,
    )
