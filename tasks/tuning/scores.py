"""Detections scored against reviewed labels, and the metrics at one pair of thresholds.

A reviewed sample is reduced to numbers once (`ScoredSample`): per image and category, every
candidate box's box score (best token probability), text score (matched-phrase probability) and
its IoU with each reviewed label of that category. Any thresholds can then be evaluated without
running a model again:

- keep the candidates with box score >= box threshold and text score >= text threshold;
- match them to the reviewed labels greedily, one to one, by decreasing text score (the score the
  pipeline ranks and stores): each takes the unmatched label it overlaps most, when that IoU
  reaches the IoU threshold (a true positive), else it is a false positive; labels left unmatched
  are false negatives (COCO's matching rule, `autolabel.models.matching.greedy_match`);
- F1 = 2 TP / (2 TP + FP + FN); AP is COCO's 101-point interpolated average precision of the kept
  candidates ranked by text score over all images (recall beyond the kept candidates counts as
  precision 0).
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from autolabel.models.matching import greedy_match

Metric = Literal["f1", "ap"]
MatchBy = Literal["mask", "box"]
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


class CategoryScores(BaseModel):
    """The candidates of one category in one image, against that category's reviewed labels.

    Attributes:
        box_scores: (N,) best token probability of each candidate.
        text_scores: (N,) matched-phrase probability of each candidate.
        ious: (N, M) IoU of each candidate with each reviewed label (mask or box IoU).
        labels: M, the number of reviewed labels.
    """

    model_config = ConfigDict(frozen=True)

    box_scores: list[float] = Field(default_factory=list)
    text_scores: list[float] = Field(default_factory=list)
    ious: list[list[float]] = Field(default_factory=list)
    labels: int = 0


class ImageScores(BaseModel):
    """One reviewed image: its scored candidates by category name."""

    model_config = ConfigDict(frozen=True)

    image_id: int
    categories: dict[str, CategoryScores] = Field(default_factory=dict)


class ScoredSample(BaseModel):
    """A reviewed sample reduced to scores: what threshold tuning and prompt comparison read.

    Attributes:
        images: The scored images, by image id.
        match_by: Whether the IoUs are of masks or of boxes.
        skipped: Reviewed images that could not be scored, by reason (e.g. `missing`).
    """

    model_config = ConfigDict(frozen=True)

    images: list[ImageScores] = Field(default_factory=list)
    match_by: MatchBy = "mask"
    skipped: dict[str, int] = Field(default_factory=dict)

    def of_category(self, category: str) -> list[CategoryScores]:
        """Every image's scores for `category` (an image without any has none)."""
        return [i.categories[category] for i in self.images if category in i.categories]


class Score(BaseModel):
    """Detection quality of one category at one pair of thresholds."""

    model_config = ConfigDict(frozen=True)

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float
    mean_iou: float | None = Field(None, description="Mean IoU of the true positives.")

    def value(self, metric: Metric) -> float:
        """The score's `metric`: F1 or AP."""
        return self.f1 if metric == "f1" else self.ap


class _Matched:
    """Kept candidates of one image and category, in text-score order, after matching."""

    __slots__ = ("ious", "scores", "tp")

    def __init__(
        self, scores: npt.NDArray[np.float32], tp: npt.NDArray[np.bool_], ious: list[float]
    ) -> None:
        self.scores, self.tp, self.ious = scores, tp, ious


class CategoryEvaluator:
    """Evaluates one category's candidates at any thresholds (matching memoised per kept set).

    Args:
        scores: The category's scores, one entry per image.
        iou_threshold: Least IoU for a match.
    """

    def __init__(self, scores: Sequence[CategoryScores], iou_threshold: float) -> None:
        self.iou_threshold = iou_threshold
        self.labels = sum(s.labels for s in scores)
        self.candidates = sum(len(s.text_scores) for s in scores)
        self._pairs: list[tuple[npt.NDArray[np.float32], ...]] = []
        self._memo: list[dict[bytes, _Matched]] = []
        for s in scores:
            text = np.asarray(s.text_scores, np.float32).reshape(-1)
            order = np.argsort(-text, kind="stable")
            box = np.asarray(s.box_scores, np.float32).reshape(-1)[order]
            ious = np.asarray(s.ious, np.float32).reshape(len(text), s.labels)[order]
            self._pairs.append((box, text[order], ious))
            self._memo.append({})

    def score(self, box_threshold: float, text_threshold: float) -> Score:
        """TP, FP, FN, precision, recall, F1, AP and mean matched IoU at these thresholds."""
        box_thr, text_thr = np.float32(box_threshold), np.float32(text_threshold)
        matched = [
            self._match(i, (box >= box_thr) & (text >= text_thr))
            for i, (box, text, _) in enumerate(self._pairs)
        ]
        tp = sum(int(m.tp.sum()) for m in matched)
        fp = sum(int((~m.tp).sum()) for m in matched)
        fn = self.labels - tp
        ious = [v for m in matched for v in m.ious]
        return Score(
            tp=tp,
            fp=fp,
            fn=fn,
            precision=tp / (tp + fp) if tp + fp else 0.0,
            recall=tp / self.labels if self.labels else 0.0,
            f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            ap=_average_precision(matched, self.labels),
            mean_iou=float(np.mean(ious)) if ious else None,
        )

    def _match(self, index: int, kept: npt.NDArray[np.bool_]) -> _Matched:
        key = np.packbits(kept).tobytes()
        memo = self._memo[index]
        if key not in memo:
            _, text, ious = self._pairs[index]
            text, ious = text[kept], ious[kept]
            label = greedy_match(ious, iou_threshold=self.iou_threshold)
            tp = label >= 0
            memo[key] = _Matched(text, tp, ious[tp, label[tp]].tolist())
        return memo[key]


def _average_precision(matched: Sequence[_Matched], labels: int) -> float:
    """COCO 101-point interpolated AP of the kept candidates ranked over all images."""
    if labels == 0:
        return 0.0
    scores = np.concatenate([m.scores for m in matched]) if matched else np.zeros(0, np.float32)
    if scores.size == 0:
        return 0.0
    tp = np.concatenate([m.tp for m in matched])[np.argsort(-scores, kind="stable")]
    tp_cum = np.cumsum(tp)
    precision = tp_cum / np.arange(1, len(tp) + 1)
    recall = tp_cum / labels
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, _RECALL_POINTS, side="left")
    sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
    return float(sampled.mean())
