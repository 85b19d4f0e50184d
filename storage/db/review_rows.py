"""The stored images and instances a review export writes, streamed image by image.

The selection is the COCO export's (`autolabel.storage.db.coco_export.ExportFilter`): for a whole
dataset, its `done` images and their current labels (`autolabel.storage.db.current_labels`); for
a run, the images the run finished and that run's annotations; reviewer-rejected and superseded
annotations are left out unless asked for. Images without
annotations are included (a reviewer may still add some). One query (images left-joined to their
annotations, ordered by image then annotation id) is read with a server-side cursor, so memory
holds one page of rows. Read-only: the caller's session, never a commit.
"""

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from autolabel.storage.db.annotation_shape import BOX_XYWH_PX, STORED_RLE
from autolabel.storage.db.coco_export import ExportFilter, review_selection
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Image,
    ImageResult,
    ImageStatus,
    ResultStatus,
)
from autolabel.storage.rle import Rle


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewImage:
    """An exported image: its storage URL and size in pixels (0 when never decoded)."""

    image_id: int
    storage_key: str
    width: int
    height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewInstance:
    """An exported annotation as stored (the exporters fit it to its image).

    Attributes:
        annotation_id: Database id (what a review import matches on).
        category_id: Database id of the category.
        bbox_xywh_px: Stored box (x, y, width, height), image pixels, origin top-left.
        area: Stored mask area in pixels.
        rle: Stored compressed COCO RLE (column-major), of the stored size.
        iscrowd: COCO crowd flag.
        score: Detector score, predicted_iou and stability_score: the segmenter's, when stored.
        model_version: The segmenter model version that produced it, when stored.
    """

    annotation_id: int
    category_id: int
    bbox_xywh_px: tuple[float, float, float, float]
    area: float
    rle: Rle
    iscrowd: bool
    score: float | None
    predicted_iou: float | None
    stability_score: float | None
    model_version: str | None


def review_categories(session: Session, *, dataset_id: int) -> list[tuple[int, str, str | None]]:
    """(id, name, supercategory) of the dataset's categories, by id."""
    rows = session.execute(
        select(Category.id, Category.name, Category.supercategory)
        .where(Category.dataset_id == dataset_id)
        .order_by(Category.id)
    )
    return [(i, name, supercategory) for i, name, supercategory in rows]


def _query(
    dataset_id: int, flt: ExportFilter, image_ids: Collection[int] | None
) -> Select[*tuple[Any, ...]]:
    on = [Annotation.image_id == Image.id, Annotation.dataset_id == dataset_id]
    images = [Image.dataset_id == dataset_id]
    if image_ids is not None:
        images.append(Image.id.in_(sorted(image_ids)))
    if flt.run_id is None:
        images.append(Image.status == ImageStatus.DONE)
    else:
        done_in_run = select(ImageResult.image_id).where(
            ImageResult.run_id == flt.run_id, ImageResult.status == ResultStatus.DONE
        )
        images.append(Image.id.in_(done_in_run))
        on.append(Annotation.run_id == flt.run_id)
    if flt.work_key is not None:
        on.append(Annotation.work_key == flt.work_key)
    if flt.min_score is not None:
        on.append(or_(Annotation.score.is_(None), Annotation.score >= flt.min_score))
    on.append(review_selection(dataset_id, flt))
    return (
        select(
            Image.id,
            Image.storage_key,
            Image.width,
            Image.height,
            Annotation.id,
            Annotation.category_id,
            BOX_XYWH_PX,
            Annotation.area,
            STORED_RLE,
            Annotation.iscrowd,
            Annotation.score,
            Annotation.predicted_iou,
            Annotation.stability_score,
            Annotation.model_version,
        )
        .outerjoin(Annotation, and_(*on))
        .where(*images)
        .order_by(Image.id, Annotation.id)
    )


def _instance(row: Any) -> ReviewInstance:
    (_, _, _, _, aid, cid, box, area, rle, crowd, score, piou, stab, mv) = row
    return ReviewInstance(
        annotation_id=aid,
        category_id=cid,
        bbox_xywh_px=box,
        area=area,
        rle=rle,
        iscrowd=bool(crowd),
        score=score,
        predicted_iou=piou,
        stability_score=stab,
        model_version=mv,
    )


def iter_review_images(
    session: Session,
    *,
    dataset_id: int,
    flt: ExportFilter,
    image_ids: Collection[int] | None = None,
    batch_size: int = 2000,
) -> Iterator[tuple[ReviewImage, list[ReviewInstance]]]:
    """Stream (image, its instances in id order) for every selected image, by image id; with
    `image_ids`, only those of the selected images (e.g. a sampled review set)."""
    query = _query(dataset_id, flt, image_ids)
    rows = session.execute(query, execution_options={"yield_per": batch_size})
    for _, group in groupby(rows, key=lambda row: row[0]):
        image_rows = list(group)
        image_id, key, width, height = image_rows[0][:4]
        image = ReviewImage(
            image_id=image_id, storage_key=key, width=width or 0, height=height or 0
        )
        yield image, [_instance(r) for r in image_rows if r[4] is not None]
