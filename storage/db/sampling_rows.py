"""The per-annotation signals that uncertainty sampling reads, streamed. Read-only.

Selection (as the review export's, `autolabel.storage.db.review_rows`): for a whole dataset, the
predictions of its `done` images under their current work key
(`autolabel.storage.db.current_labels`); for a run, that run's annotations of the images it
finished. Only `unreviewed` and `accepted` annotations are read (rejected and superseded ones are
left out); unless `include_reviewed`, images a reviewer already saw are left out whole: those with
any annotation a reviewer decided on (`review_status` other than `unreviewed`, whatever the run) or
covered by an imported review file (`reviewed_images`).

Boxes: the labeling pipeline stores each mask's own tight box and, in `box_iou`, the IoU of the
detector's box (the segmenter's prompt) with it; a COCO import stores the file's box. Each row
carries `box_iou`, the stored box and the box of the stored mask (`pycocotools` `toBbox` on the
RLE, no decoding), so rows without `box_iou` (imports, hand-made or fitted rows) show their
disagreement too.

Thresholds: each row carries the detector box threshold its run recorded for its category
(`thresholds.category_box_thresholds`, else `thresholds.box_threshold` of the run's parameters),
None when unknown (no run, or a run without recorded thresholds).
"""

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, aliased

from autolabel.storage.db.annotation_shape import BOX_XYWH_PX, STORED_RLE
from autolabel.storage.db.current_labels import current_prediction_key
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Image,
    ImageResult,
    ImageStatus,
    LabelRun,
    ResultStatus,
    ReviewedImage,
    ReviewStatus,
)
from autolabel.storage.rle import rle_bboxes

BoxXywh = tuple[float, float, float, float]
_READ_STATUSES = (ReviewStatus.UNREVIEWED, ReviewStatus.ACCEPTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalFilter:
    """Which annotations to read.

    Attributes:
        run_id: Only this label run (images: those it finished); None for the whole dataset
            (images: those whose current etag is done).
        include_reviewed: Keep images a reviewer already decided on (their accepted annotations
            come with `accepted=True`).
    """

    run_id: int | None = None
    include_reviewed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalRow:
    """One stored annotation's uncertainty signals.

    Attributes:
        image_id: Database id of the image; storage_key its storage URL.
        annotation_id: Database id of the annotation; category_id of its category.
        score: Detector score; predicted_iou and stability_score the segmenter's (None: unknown).
        bbox_xywh_px: Stored box (x, y, width, height), image pixels, origin top-left.
        mask_bbox_xywh_px: Tight box of the stored mask, same frame; all zeros for an empty mask.
        box_iou: IoU of the detector's box with the mask's box, when the pipeline stored it.
        score_threshold: Detector box threshold the annotation passed, None when unknown.
        accepted: A reviewer accepted it.
    """

    image_id: int
    storage_key: str
    annotation_id: int
    category_id: int
    score: float | None
    predicted_iou: float | None
    stability_score: float | None
    bbox_xywh_px: BoxXywh
    mask_bbox_xywh_px: BoxXywh
    box_iou: float | None
    score_threshold: float | None
    accepted: bool


def _conditions(dataset_id: int, flt: SignalFilter) -> list[ColumnElement[bool]]:
    where = [
        Annotation.dataset_id == dataset_id,
        Image.dataset_id == dataset_id,
        Annotation.review_status.in_(_READ_STATUSES),
    ]
    if flt.run_id is None:
        where += [Image.status == ImageStatus.DONE, current_prediction_key(dataset_id)]
    else:
        done_in_run = select(ImageResult.image_id).where(
            ImageResult.run_id == flt.run_id, ImageResult.status == ResultStatus.DONE
        )
        where += [Annotation.run_id == flt.run_id, Image.id.in_(done_in_run)]
    if not flt.include_reviewed:
        decided = aliased(Annotation)
        reviewed = select(decided.image_id).where(
            decided.dataset_id == dataset_id, decided.review_status != ReviewStatus.UNREVIEWED
        )
        where += [Image.id.not_in(reviewed), Image.id.not_in(select(ReviewedImage.image_id))]
    return where


def category_counts(session: Session, *, dataset_id: int, flt: SignalFilter) -> dict[int, int]:
    """Number of selected annotations per category id (categories without any are absent)."""
    rows = session.execute(
        select(Annotation.category_id, func.count())
        .join(Image, Image.id == Annotation.image_id)
        .where(*_conditions(dataset_id, flt))
        .group_by(Annotation.category_id)
    )
    return {category_id: int(n) for category_id, n in rows}


def category_names(session: Session, *, dataset_id: int) -> dict[int, str]:
    """Name of each of the dataset's categories, by id."""
    rows = session.execute(
        select(Category.id, Category.name).where(Category.dataset_id == dataset_id)
    )
    return {int(category_id): str(name) for category_id, name in rows}


@dataclass(frozen=True, slots=True)
class RunThresholds:
    """A run's recorded detector box thresholds: one default, overrides by category name."""

    box_threshold: float | None
    by_category: Mapping[str, float]

    def get(self, category: str | None) -> float | None:
        """The threshold of `category` (its override, else the run's default)."""
        return self.by_category.get(category or "", self.box_threshold)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _run_thresholds(parameters: Any) -> RunThresholds:
    thresholds = parameters.get("thresholds") if isinstance(parameters, dict) else None
    if not isinstance(thresholds, dict):
        return RunThresholds(None, {})
    overrides = thresholds.get("category_box_thresholds")
    by_category = {
        str(name): number
        for name, value in (overrides.items() if isinstance(overrides, dict) else ())
        if (number := _number(value)) is not None
    }
    return RunThresholds(_number(thresholds.get("box_threshold")), by_category)


def run_thresholds(session: Session, *, dataset_id: int) -> dict[int, RunThresholds]:
    """The recorded detector thresholds of each of the dataset's label runs, by run id."""
    runs = session.execute(
        select(LabelRun.id, LabelRun.parameters).where(LabelRun.dataset_id == dataset_id)
    )
    return {run_id: _run_thresholds(parameters) for run_id, parameters in runs}


def _query(dataset_id: int, flt: SignalFilter) -> Select[*tuple[Any, ...]]:
    return (
        select(
            Annotation.image_id,
            Image.storage_key,
            Annotation.id,
            Annotation.category_id,
            Annotation.run_id,
            Annotation.score,
            Annotation.predicted_iou,
            Annotation.stability_score,
            BOX_XYWH_PX,
            STORED_RLE,
            Annotation.review_status,
            Annotation.box_iou,
        )
        .join(Image, Image.id == Annotation.image_id)
        .where(*_conditions(dataset_id, flt))
        .order_by(Annotation.image_id, Annotation.id)
    )


def _page(
    rows: Collection[Any], thresholds: Mapping[int, RunThresholds], names: Mapping[int, str]
) -> Iterator[SignalRow]:
    mask_boxes = rle_bboxes([row[9] for row in rows])
    for row, mask_box in zip(rows, mask_boxes, strict=True):
        image_id, key, aid, cid, run_id, score, piou, stab, box, _, status, box_iou = row
        mx, my, mw, mh = (float(v) for v in mask_box)
        yield SignalRow(
            image_id=image_id,
            storage_key=key,
            annotation_id=aid,
            category_id=cid,
            score=score,
            predicted_iou=piou,
            stability_score=stab,
            bbox_xywh_px=box,
            mask_bbox_xywh_px=(mx, my, mw, mh),
            box_iou=box_iou,
            score_threshold=run.get(names.get(cid)) if (run := thresholds.get(run_id)) else None,
            accepted=status == ReviewStatus.ACCEPTED,
        )


def iter_signal_rows(
    session: Session, *, dataset_id: int, flt: SignalFilter, batch_size: int = 5000
) -> Iterator[SignalRow]:
    """Stream the selected annotations' signals, by image id then annotation id (a server-side
    cursor: memory holds one page of rows)."""
    names = category_names(session, dataset_id=dataset_id)
    thresholds = run_thresholds(session, dataset_id=dataset_id)
    result = session.execute(_query(dataset_id, flt), execution_options={"yield_per": batch_size})
    for page in result.partitions():
        yield from _page(page, thresholds, names)
