"""COCO export from the annotation database, streamed.

Images and annotations are read with server-side cursors (`yield_per`) into `CocoJsonWriter`, so
memory stays flat for millions of annotations; RLE annotations are serialized with a dedicated
formatter (the hot path). `file_name` is relative to the dataset's image root and `coco_url` is
the full storage URL (see `autolabel.storage.coco.coco_file_name`).
"""

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, or_, select, true
from sqlalchemy.orm import Session

from autolabel.storage.coco import (
    CocoJsonWriter,
    annotation_record,
    category_record,
    image_json,
)
from autolabel.storage.db import queries
from autolabel.storage.db.current_labels import current_prediction_key, is_current_label
from autolabel.storage.db.tables import (
    HIDDEN_REVIEW_STATUSES,
    Annotation,
    Category,
    Image,
    ImageResult,
    ImageStatus,
    ResultStatus,
)
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.objectstore import ObjectStore
from autolabel.storage.rle import Rle, decode_rle, polygons_or_rle

SegmentationFormat = Literal["rle", "polygon"]
_ANN_COLUMNS = (
    Annotation.id,
    Annotation.image_id,
    Annotation.category_id,
    Annotation.bbox_x,
    Annotation.bbox_y,
    Annotation.bbox_w,
    Annotation.bbox_h,
    Annotation.area,
    Annotation.iscrowd,
    Annotation.seg_counts,
    Annotation.seg_height,
    Annotation.seg_width,
    Annotation.score,
    Annotation.predicted_iou,
    Annotation.stability_score,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFilter:
    """Which annotations to export.

    Attributes:
        run_id: Only this label run (images: those the run finished); None for the whole dataset
            (images: those whose current etag is done).
        work_key: Only annotations produced under this work key.
        min_score: Drop annotations with a detector score below this (unscored ones are kept).
        include_rejected: Keep annotations a reviewer rejected (and superseded).

    A dataset-wide selection takes each image's current labels
    (`autolabel.storage.db.current_labels`): a rerun replaces older predictions, reviewed work
    stays.
    """

    run_id: int | None = None
    work_key: str | None = None
    min_score: float | None = None
    include_rejected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportStats:
    """What an export wrote."""

    n_images: int
    n_annotations: int
    n_categories: int
    seconds: float


def _image_query(dataset_id: int, flt: ExportFilter) -> Select[*tuple[Any, ...]]:
    stmt = select(Image.id, Image.storage_key, Image.width, Image.height).where(
        Image.dataset_id == dataset_id
    )
    if flt.run_id is None:
        return stmt.where(Image.status == ImageStatus.DONE).order_by(Image.id)
    done_in_run = select(ImageResult.image_id).where(
        ImageResult.run_id == flt.run_id, ImageResult.status == ResultStatus.DONE
    )
    return stmt.where(Image.id.in_(done_in_run)).order_by(Image.id)


def _annotation_query(dataset_id: int, flt: ExportFilter) -> Select[*tuple[Any, ...]]:
    stmt = select(*_ANN_COLUMNS).where(Annotation.dataset_id == dataset_id)
    if flt.run_id is None:
        stmt = stmt.join(Image, Image.id == Annotation.image_id).where(
            Image.status == ImageStatus.DONE
        )
    else:
        stmt = stmt.where(Annotation.run_id == flt.run_id)
    if flt.work_key is not None:
        stmt = stmt.where(Annotation.work_key == flt.work_key)
    if flt.min_score is not None:
        stmt = stmt.where(or_(Annotation.score.is_(None), Annotation.score >= flt.min_score))
    return stmt.where(review_selection(dataset_id, flt)).order_by(Annotation.id)


def review_selection(dataset_id: int, flt: ExportFilter) -> ColumnElement[bool]:
    """Which annotations an export of `flt` takes by review status and, dataset-wide, by being
    their image's current labels."""
    hidden = Annotation.review_status.in_(HIDDEN_REVIEW_STATUSES)
    if flt.run_id is not None:
        return true() if flt.include_rejected else ~hidden
    current = is_current_label(dataset_id)
    if flt.include_rejected:
        return or_(current, and_(hidden, current_prediction_key(dataset_id)))
    return current


def _opt(name: str, value: float | None) -> str:
    return "" if value is None else f',"{name}":{value!r}'


def _rle_json(rows: Iterator[Any]) -> Iterator[str]:
    """Serialize annotation rows (hot path: plain string formatting, no dict per row)."""
    for aid, iid, cid, x, y, w, h, area, crowd, counts, sh, sw, score, piou, stab in rows:
        escaped = counts.replace("\\", "\\\\")  # the only JSON-special char RLE counts can hold
        yield (
            f'{{"id":{aid},"image_id":{iid},"category_id":{cid},"bbox":[{x!r},{y!r},{w!r},{h!r}],'
            f'"area":{area!r},"iscrowd":{int(crowd)},'
            f'"segmentation":{{"size":[{sh},{sw}],"counts":"{escaped}"}}'
            f"{_opt('score', score)}{_opt('predicted_iou', piou)}"
            f"{_opt('stability_score', stab)}}}"
        )


def _polygon_json(rows: Iterator[Any]) -> Iterator[str]:
    """Serialize with polygon segmentations (RLE for crowds and masks polygons cannot represent)."""
    for aid, iid, cid, x, y, w, h, area, crowd, counts, sh, sw, score, piou, stab in rows:
        rle = Rle(size=[sh, sw], counts=counts)
        segmentation = rle if crowd else polygons_or_rle(decode_rle(rle))
        extra = {"predicted_iou": piou, "stability_score": stab}
        record = annotation_record(
            annotation_id=aid,
            image_id=iid,
            category_id=cid,
            bbox_xywh_px=(x, y, w, h),
            area=area,
            segmentation=segmentation,
            iscrowd=crowd,
            score=score,
            extra={k: v for k, v in extra.items() if v is not None},
        )
        yield json.dumps(record, separators=(",", ":"))


def write_coco(
    session: Session,
    stream: Any,
    *,
    dataset_id: int,
    flt: ExportFilter = ExportFilter(),
    segmentation: SegmentationFormat = "rle",
    image_root: str | None = None,
    batch_size: int = 20_000,
) -> ExportStats:
    """Stream one dataset (or run) as COCO instances JSON into a text stream.

    Ids are database ids; images are named by `autolabel.storage.coco.coco_file_name` relative to
    `image_root`, by default the dataset's source (`queries.dataset_source_root`: the `source` of
    `flt.run_id`, or of its most recent label run), with the full storage URL as `coco_url`.
    """
    start = time.perf_counter()
    if image_root is None:
        image_root = queries.dataset_source_root(session, dataset_id=dataset_id, run_id=flt.run_id)
    cats = session.execute(
        select(Category.id, Category.name, Category.supercategory)
        .where(Category.dataset_id == dataset_id)
        .order_by(Category.id)
    ).all()
    writer = CocoJsonWriter(
        stream,
        categories=[category_record(category_id=c, name=n, supercategory=s) for c, n, s in cats],
        info={"description": f"autolabel dataset {dataset_id}", "version": "1.0"},
    )
    opts = {"yield_per": batch_size}
    images = session.execute(_image_query(dataset_id, flt), execution_options=opts)
    writer.write_raw(
        "images",
        (image_json(i, key, w or 0, h or 0, image_root=image_root) for i, key, w, h in images),
    )
    rows = iter(session.execute(_annotation_query(dataset_id, flt), execution_options=opts))
    writer.write_raw(
        "annotations", _rle_json(rows) if segmentation == "rle" else _polygon_json(rows)
    )
    writer.close()
    return ExportStats(
        n_images=writer.n_images,
        n_annotations=writer.n_annotations,
        n_categories=len(cats),
        seconds=time.perf_counter() - start,
    )


def unwritable(destination: Path | tuple[ObjectStore, str], exc: OSError) -> StorageConfigError:
    """The one-line error for an export destination that cannot be written."""
    where = destination if isinstance(destination, Path) else destination[1]
    return StorageConfigError(
        f"cannot write the export to {where}: {exc.strerror or type(exc).__name__}"
    )


def write_coco_json(
    session: Session,
    *,
    dataset_id: int,
    destination: Path | tuple[ObjectStore, str],
    flt: ExportFilter = ExportFilter(),
    segmentation: SegmentationFormat = "rle",
    image_root: str | None = None,
) -> ExportStats:
    """Write `write_coco`'s document to a local file (atomically) or a store's `(store, key)`.

    The document is first written to a temporary file next to the destination (or in the system
    temp folder for a store), then renamed into place or uploaded with `store.put_file`.
    """
    folder = destination.parent if isinstance(destination, Path) else None
    try:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, removed on failure
            "w", encoding="utf-8", suffix=".json.tmp", dir=folder, delete=False
        )
    except OSError as exc:
        raise unwritable(destination, exc) from exc
    tmp_path = Path(tmp.name)
    with tmp:
        try:
            stats = write_coco(
                session,
                tmp,
                dataset_id=dataset_id,
                flt=flt,
                segmentation=segmentation,
                image_root=image_root,
            )
        except BaseException:
            tmp.close()
            tmp_path.unlink(missing_ok=True)
            raise
    try:
        if isinstance(destination, Path):
            tmp_path.replace(destination)
        else:
            store, key = destination
            store.put_file(key, tmp_path)
    except OSError as exc:
        raise unwritable(destination, exc) from exc
    finally:
        tmp_path.unlink(missing_ok=True)
    return stats
