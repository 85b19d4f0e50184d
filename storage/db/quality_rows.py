"""Read-only rows of the quality report: per-category counts, score histograms, the predictions
of reviewed images and sample images, for a dataset or for one label run.

Scope (`QualityScope`): a run's images are those it finished (a `done` image result of the run)
and its predictions the annotations it wrote; a dataset's images are those whose current etag is
done (as the COCO export) and its predictions every annotation stored on them. Annotations a
review import created (work key `REVIEW_WORK_KEY`: corrected copies, added objects) are reviewed
labels, never predictions. Counts and histograms are aggregated by the database (GROUP BY; a
histogram bin is a CASE expression), so memory does not grow with the dataset; predictions are
read for one chunk of image ids at a time. The caller's session, never a commit.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, func, literal_column, or_, select
from sqlalchemy.orm import Session

from autolabel.storage.db.annotation_shape import BOX_XYWH_PX, STORED_RLE
from autolabel.storage.db.current_labels import current_prediction_key
from autolabel.storage.db.queries import ImageAnnotation
from autolabel.storage.db.reviewed_labels import REVIEW_WORK_KEY
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Image,
    ImageResult,
    ImageStatus,
    ResultStatus,
    ReviewedImage,
    ReviewStatus,
)
from autolabel.storage.rle import Rle

ScoreField = Literal["score", "predicted_iou", "stability_score"]
SCORE_FIELDS: tuple[ScoreField, ...] = ("score", "predicted_iou", "stability_score")
_SCORE_COLUMNS = {
    "score": Annotation.score,
    "predicted_iou": Annotation.predicted_iou,
    "stability_score": Annotation.stability_score,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityScope:
    """What a report covers: a dataset, or one label run of it (`run_id`)."""

    dataset_id: int
    run_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryCounts:
    """One category's annotations in the scope.

    Attributes:
        category_id: Database id; `category` its name.
        predictions: Review status (`unreviewed`, `accepted`, `rejected`, `superseded`) ->
            number of predictions; every status is present.
        review_labels: Accepted annotations a review import created on the scope's images.
    """

    category_id: int
    category: str
    predictions: dict[str, int]
    review_labels: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoredPrediction:
    """One prediction on a reviewed image, as the agreement needs it.

    Attributes:
        rle: Compressed COCO RLE (column-major) as stored; its size may differ from the image's.
        score: Detector confidence, or None (boxes given, not detected).
    """

    annotation_id: int
    image_id: int
    category_id: int
    score: float | None
    review_status: ReviewStatus
    rle: Rle


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleImage:
    """An image picked for an overlay: `storage_key` is its full URL."""

    image_id: int
    storage_key: str
    reviewed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OverlayInstance(ImageAnnotation):
    """One annotation drawn on a sample image, with its review status; `by_review`: a review
    import created it."""

    review_status: ReviewStatus
    by_review: bool


def _scope_images(scope: QualityScope) -> Select[int]:
    """Ids of the scope's images (a subquery)."""
    if scope.run_id is None:
        return select(Image.id).where(
            Image.dataset_id == scope.dataset_id, Image.status == ImageStatus.DONE
        )
    return select(ImageResult.image_id).where(
        ImageResult.run_id == scope.run_id, ImageResult.status == ResultStatus.DONE
    )


def _is_prediction(scope: QualityScope) -> ColumnElement[bool]:
    """The scope's predictions: annotations on its images, not created by a review, written by
    its run (for a run) or under each image's current work key (for the dataset)."""
    conditions = [
        Annotation.dataset_id == scope.dataset_id,
        Annotation.work_key != REVIEW_WORK_KEY,
        Annotation.image_id.in_(_scope_images(scope)),
    ]
    if scope.run_id is not None:
        conditions.append(Annotation.run_id == scope.run_id)
    else:  # the predictions now in force: each image's current work key, whatever their review
        conditions.append(current_prediction_key(scope.dataset_id))
    return and_(*conditions)


def _is_review_label() -> ColumnElement[bool]:
    return and_(
        Annotation.work_key == REVIEW_WORK_KEY, Annotation.review_status == ReviewStatus.ACCEPTED
    )


def category_counts(session: Session, *, scope: QualityScope) -> list[CategoryCounts]:
    """Every category of the dataset (in creation order) with its counts in the scope."""
    by_status: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Annotation.category_id, Annotation.review_status, func.count())
        .where(_is_prediction(scope))
        .group_by(Annotation.category_id, Annotation.review_status)
    )
    for category_id, status, n in rows:
        by_status.setdefault(int(category_id), {})[ReviewStatus(status).value] = int(n)
    label_rows = session.execute(
        select(Annotation.category_id, func.count())
        .where(
            Annotation.dataset_id == scope.dataset_id,
            Annotation.image_id.in_(_scope_images(scope)),
            _is_review_label(),
        )
        .group_by(Annotation.category_id)
    )
    labels = {int(category_id): int(n) for category_id, n in label_rows}
    categories = session.execute(
        select(Category.id, Category.name)
        .where(Category.dataset_id == scope.dataset_id)
        .order_by(Category.id)
    )
    return [
        CategoryCounts(
            category_id=int(cid),
            category=name,
            predictions={
                s.value: by_status.get(int(cid), {}).get(s.value, 0) for s in ReviewStatus
            },
            review_labels=labels.get(int(cid), 0),
        )
        for cid, name in categories
    ]


def score_histogram(
    session: Session, *, scope: QualityScope, field: ScoreField, bins: int
) -> dict[int, list[int]]:
    """Category id -> `bins` counts of the predictions' `field` over [0, 1] in equal bins
    (values below 0 count in the first bin, values of 1 or more in the last; NULLs nowhere).
    Categories without a value are absent."""
    if bins < 1:
        raise ValueError(f"expected at least one histogram bin, got {bins}")
    column = _SCORE_COLUMNS[field]
    whens: list[tuple[ColumnElement[bool], Any]] = [
        (column < literal_column(repr(i / bins)), literal_column(str(i - 1)))
        for i in range(1, bins)
    ]
    bin_of = case(*whens, else_=literal_column(str(bins - 1))) if whens else literal_column("0")
    binned = (
        select(Annotation.category_id.label("category_id"), bin_of.label("bin"))
        .where(_is_prediction(scope), column.is_not(None))
        .subquery()
    )
    out: dict[int, list[int]] = {}
    rows = session.execute(
        select(binned.c.category_id, binned.c.bin, func.count()).group_by(
            binned.c.category_id, binned.c.bin
        )
    )
    for category_id, index, n in rows:
        out.setdefault(int(category_id), [0] * bins)[int(index)] = int(n)
    return out


def reviewed_scope_image_ids(session: Session, *, scope: QualityScope) -> list[int]:
    """Ids of the scope's images that a review import covered, ascending."""
    rows = session.execute(
        select(ReviewedImage.image_id)
        .where(ReviewedImage.image_id.in_(_scope_images(scope)))
        .distinct()
        .order_by(ReviewedImage.image_id)
    )
    return [int(i) for (i,) in rows]


def image_sizes(session: Session, *, image_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Image id -> (height, width) of those of `image_ids` whose size is known."""
    rows = session.execute(
        select(Image.id, Image.height, Image.width).where(Image.id.in_(list(image_ids)))
    )
    return {int(i): (int(h), int(w)) for i, h, w in rows if h and w}


def reviewed_predictions(
    session: Session, *, scope: QualityScope, image_ids: Sequence[int]
) -> dict[int, list[ScoredPrediction]]:
    """Image id -> the scope's predictions on each of `image_ids` (one chunk: the ids go into
    one IN list), by annotation id; an image without predictions is absent."""
    rows = session.execute(
        select(
            Annotation.id,
            Annotation.image_id,
            Annotation.category_id,
            Annotation.score,
            Annotation.review_status,
            STORED_RLE,
        )
        .where(_is_prediction(scope), Annotation.image_id.in_(list(image_ids)))
        .order_by(Annotation.image_id, Annotation.id)
    )
    out: dict[int, list[ScoredPrediction]] = {}
    for aid, image_id, cid, score, status, rle in rows:
        out.setdefault(int(image_id), []).append(
            ScoredPrediction(
                annotation_id=int(aid),
                image_id=int(image_id),
                category_id=int(cid),
                score=score,
                review_status=ReviewStatus(status),
                rle=rle,
            )
        )
    return out


def sample_images(session: Session, *, scope: QualityScope, limit: int) -> list[SampleImage]:
    """Up to `limit` images to draw: reviewed ones first, then others with predictions in the
    scope, lowest ids first within each."""
    reviewed = select(ReviewedImage.image_id)
    first = session.execute(
        select(Image.id, Image.storage_key)
        .where(Image.id.in_(_scope_images(scope)), Image.id.in_(reviewed))
        .order_by(Image.id)
        .limit(limit)
    ).all()
    picked = [SampleImage(image_id=int(i), storage_key=k, reviewed=True) for i, k in first]
    if len(picked) < limit:
        predicted = select(Annotation.image_id).where(_is_prediction(scope))
        rest = session.execute(
            select(Image.id, Image.storage_key)
            .where(Image.id.in_(predicted), Image.id.not_in(reviewed))
            .order_by(Image.id)
            .limit(limit - len(picked))
        )
        picked += [SampleImage(image_id=int(i), storage_key=k, reviewed=False) for i, k in rest]
    return picked


def overlay_instances(
    session: Session, *, scope: QualityScope, image_id: int
) -> list[OverlayInstance]:
    """What a sample image shows: the scope's predictions on it and the labels reviewers made
    there, by annotation id."""
    rows = session.execute(
        select(
            Category.name,
            BOX_XYWH_PX,
            STORED_RLE,
            Annotation.score,
            Annotation.review_status,
            Annotation.work_key,
        )
        .join(Category, Category.id == Annotation.category_id)
        .where(
            Annotation.image_id == image_id,
            or_(
                _is_prediction(scope),
                and_(Annotation.dataset_id == scope.dataset_id, _is_review_label()),
            ),
        )
        .order_by(Annotation.id)
    )
    return [
        OverlayInstance(
            category=name,
            bbox_xywh_px=box,
            rle=rle,
            score=score,
            review_status=ReviewStatus(status),
            by_review=work_key == REVIEW_WORK_KEY,
        )
        for name, box, rle, score, status, work_key in rows
    ]
