"""Agreement of predictions with reviewed labels: matches, precision, recall and mask IoU.

On one reviewed image, per category (a prediction only ever matches a label of its category):

1. A prediction the reviewer accepted as it was is itself a reviewed label: a true positive
   with mask IoU 1.
2. A prediction the reviewer rejected is a false positive.
3. Every other prediction (corrected, i.e. `superseded`, or never reviewed, e.g. written by a
   later run) is matched greedily (`autolabel.models.matching.greedy_match`), highest score
   first (COCO's order; unscored last, then by annotation id), to the unmatched label of highest
   mask IoU, if that IoU is at least the threshold: a true positive with that IoU; otherwise a
   false positive.
4. Labels left unmatched (corrected copies or added objects no prediction overlaps enough,
   accepted predictions of other runs) are false negatives.

Mask IoU is pycocotools' on compressed RLE (`autolabel.storage.rle.rle_ious`); a mask stored at
another size than the image is cropped or padded to the image first
(`autolabel.storage.mask_clip.fit_rle`).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from autolabel.models.matching import greedy_match
from autolabel.storage.db.quality_rows import ScoredPrediction
from autolabel.storage.db.reviewed_labels import ReviewedLabel
from autolabel.storage.db.tables import ReviewStatus
from autolabel.storage.mask_clip import fit_rle
from autolabel.storage.rle import Rle, rle_ious


@dataclass(slots=True)
class CategoryTally:
    """Matching counts of one category: true positives (`tp`), false positives (`fp`), false
    negatives (`fn`) and the sum of the true positives' mask IoUs."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0

    def add(self, other: "CategoryTally") -> None:
        """Add `other`'s counts to these."""
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou_sum += other.iou_sum

    @property
    def precision(self) -> float | None:
        """tp / (tp + fp); None without predictions."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """tp / (tp + fn); None without labels."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """2 tp / (2 tp + fp + fn); None without predictions or labels."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else None

    @property
    def mean_iou(self) -> float | None:
        """Mean mask IoU of the true positives; None without any."""
        return self.iou_sum / self.tp if self.tp else None


@dataclass(slots=True)
class AgreementTally:
    """Category id -> tally, summed over reviewed images."""

    images: int = 0
    categories: dict[int, CategoryTally] = field(default_factory=dict)

    def add_image(self, tallies: dict[int, CategoryTally]) -> None:
        """Count one reviewed image with its per-category tallies (`match_image`)."""
        self.images += 1
        for category_id, tally in tallies.items():
            self.categories.setdefault(category_id, CategoryTally()).add(tally)

    def total(self) -> CategoryTally:
        """All categories together (micro-averaged)."""
        out = CategoryTally()
        for tally in self.categories.values():
            out.add(tally)
        return out


def mask_ious(
    predictions: Sequence[Rle], labels: Sequence[Rle], *, size: tuple[int, int]
) -> npt.NDArray[np.float64]:
    """(P, L) float64 mask IoUs of compressed RLEs, each fitted to `size` (height, width)."""
    height, width = size
    return rle_ious(
        [fit_rle(r, height=height, width=width) for r in predictions],
        [fit_rle(r, height=height, width=width) for r in labels],
    )


def _order(prediction: ScoredPrediction) -> tuple[bool, float, int]:
    score = prediction.score
    return (score is None, -(score or 0.0), prediction.annotation_id)


def _match_category(
    predictions: Sequence[ScoredPrediction],
    labels: Sequence[ReviewedLabel],
    *,
    iou_threshold: float,
    size: tuple[int, int],
) -> CategoryTally:
    tally = CategoryTally()
    label_ids = {label.annotation_id for label in labels}
    open_predictions = []
    for prediction in predictions:
        if prediction.annotation_id in label_ids:  # accepted as it was: it is the label
            tally.tp += 1
            tally.iou_sum += 1.0
            label_ids.discard(prediction.annotation_id)
        elif prediction.review_status is ReviewStatus.REJECTED:
            tally.fp += 1
        else:
            open_predictions.append(prediction)
    open_predictions.sort(key=_order)
    open_labels = [label for label in labels if label.annotation_id in label_ids]
    ious = mask_ious(
        [p.rle for p in open_predictions], [label.rle for label in open_labels], size=size
    )
    matched = greedy_match(ious, iou_threshold=iou_threshold)
    found = np.flatnonzero(matched >= 0)
    tally.tp += len(found)
    tally.iou_sum += float(ious[found, matched[found]].sum())
    tally.fp += len(matched) - len(found)
    tally.fn += len(open_labels) - len(found)
    return tally


def match_image(
    predictions: Iterable[ScoredPrediction],
    labels: Iterable[ReviewedLabel],
    *,
    iou_threshold: float,
    size: tuple[int, int] | None = None,
) -> dict[int, CategoryTally]:
    """Match one reviewed image's predictions with its reviewed labels (see the module).

    Args:
        predictions: The image's predictions in the report's scope.
        labels: The image's reviewed labels (`reviewed_labels`).
        iou_threshold: Lowest mask IoU of a match, in (0, 1].
        size: (height, width) of the image in pixels; None takes the first label's or
            prediction's mask size.

    Returns:
        Category id -> tally, for every category with a prediction or a label on the image.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"expected an IoU threshold in (0, 1], got {iou_threshold}")
    by_category: dict[int, tuple[list[ScoredPrediction], list[ReviewedLabel]]] = {}
    for prediction in predictions:
        by_category.setdefault(prediction.category_id, ([], []))[0].append(prediction)
    for label in labels:
        by_category.setdefault(label.category_id, ([], []))[1].append(label)
    if size is None:
        first = next((v[1] or v[0] for v in by_category.values()), [])
        rle = first[0].rle if first else Rle(size=[0, 0], counts="")
        size = (int(rle["size"][0]), int(rle["size"][1]))
    return {
        category_id: _match_category(p, lab, iou_threshold=iou_threshold, size=size)
        for category_id, (p, lab) in by_category.items()
    }
