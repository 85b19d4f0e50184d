"""COCO export from the annotation database (streaming) and COCO import into it (idempotent).

Export streams images and annotations with server-side cursors (`yield_per`) into
`CocoJsonWriter`, so memory stays flat for millions of annotations; RLE annotations are
serialized with a dedicated formatter (the hot path). Import loads one COCO file, maps its
categories by name and its images by `file_name` (the storage key), and stores annotations under
a work key derived from `source`: importing the same source again replaces its annotations
instead of duplicating them.
"""

import hashlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from autolabel.storage.coco import (
    CocoJsonWriter,
    annotation_record,
    category_record,
    read_coco,
    segmentation_to_rle,
)
from autolabel.storage.db.bulk import record_image_results, write_annotations
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import (
    ensure_categories,
    get_or_create_dataset,
    register_images,
)
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Image,
    ImageResult,
    ImageStatus,
    ResultStatus,
    ReviewStatus,
)
from autolabel.storage.errors import FormatError
from autolabel.storage.objectstore import ObjectStore
from autolabel.storage.rle import Rle, decode_rle, polygons_or_rle, rle_areas, rle_bboxes

SegmentationFormat = Literal["rle", "polygon"]
_ANN_COLUMNS = (
    Annotation.id, Annotation.image_id, Annotation.category_id, Annotation.bbox_x,
    Annotation.bbox_y, Annotation.bbox_w, Annotation.bbox_h, Annotation.area, Annotation.iscrowd,
    Annotation.seg_counts, Annotation.seg_height, Annotation.seg_width, Annotation.score,
    Annotation.predicted_iou, Annotation.stability_score,
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFilter:
    """Which annotations to export.

    Attributes:
        run_id: Only this label run (images: those the run finished); None for the whole dataset
            (images: those whose current etag is done).
        work_key: Only annotations produced under this work key.
        min_score: Drop annotations with a detector score below this (unscored ones are kept).
        include_rejected: Keep annotations a reviewer rejected.
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportStats:
    """What an import stored."""

    dataset_id: int
    work_key: str
    n_images: int
    n_annotations_inserted: int
    n_categories: int


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
    if not flt.include_rejected:
        stmt = stmt.where(Annotation.review_status != ReviewStatus.REJECTED)
    return stmt.order_by(Annotation.id)


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
            annotation_id=aid, image_id=iid, category_id=cid, bbox_xywh_px=(x, y, w, h),
            area=area, segmentation=segmentation, iscrowd=crowd, score=score,
            extra={k: v for k, v in extra.items() if v is not None},
        )  # fmt: skip
        yield json.dumps(record, separators=(",", ":"))


def write_coco(
    session: Session,
    stream: Any,
    *,
    dataset_id: int,
    flt: ExportFilter = ExportFilter(),
    segmentation: SegmentationFormat = "rle",
    batch_size: int = 20_000,
) -> ExportStats:
    """Stream one dataset (or run) as COCO instances JSON into a text stream.

    Category ids are database category ids; image ids database image ids (`file_name` is the
    storage key); annotation ids database annotation ids.
    """
    start = time.perf_counter()
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
        (
            f'{{"id":{i},"file_name":{json.dumps(k)},"width":{w or 0},"height":{h or 0}}}'
            for i, k, w, h in images
        ),
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


def export_coco(
    session: Session,
    *,
    dataset_id: int,
    destination: Path | tuple[ObjectStore, str],
    flt: ExportFilter = ExportFilter(),
    segmentation: SegmentationFormat = "rle",
) -> ExportStats:
    """Export to a local file (written atomically) or to an object store `(store, key)`.

    The document is first written to a temporary file next to the destination (or in the system
    temp folder for a store), then renamed into place or uploaded with `store.put_file`.
    """
    folder = destination.parent if isinstance(destination, Path) else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", suffix=".json.tmp", dir=folder, delete=False
    ) as tmp:
        tmp_path = Path(tmp.name)
        try:
            stats = write_coco(
                session, tmp, dataset_id=dataset_id, flt=flt, segmentation=segmentation
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
    finally:
        tmp_path.unlink(missing_ok=True)
    return stats


def import_work_key(source: str) -> str:
    """Work key of annotations imported from `source` (sha256 hex)."""
    return hashlib.sha256(f"coco-import\x00{source}".encode()).hexdigest()


def _image_size(image: Mapping[str, Any], label: str) -> tuple[int, int]:
    try:
        return int(image["height"]), int(image["width"])
    except (KeyError, TypeError, ValueError) as err:
        raise FormatError(f"expected integer width/height for image in {label}: {err}") from err


def _to_rows(
    anns: Sequence[Mapping[str, Any]],
    *,
    image_id: int,
    size: tuple[int, int],
    cat_ids: Mapping[int, int],
) -> list[AnnotationIn]:
    height, width = size
    rles = [segmentation_to_rle(a["segmentation"], height=height, width=width) for a in anns]
    areas, boxes = rle_areas(rles), rle_bboxes(rles)
    rows = []
    for index, (ann, rle) in enumerate(zip(anns, rles, strict=True)):
        if ann.get("category_id") not in cat_ids:
            raise FormatError(f"expected a known category_id, got {ann.get('category_id')!r}")
        bbox = ann.get("bbox") or boxes[index].tolist()
        rows.append(
            AnnotationIn(
                image_id=image_id, category_id=cat_ids[ann["category_id"]], instance_index=index,
                bbox_xywh_px=(bbox[0], bbox[1], bbox[2], bbox[3]),
                area=float(ann.get("area", areas[index])), seg_counts=rle["counts"],
                seg_height=height, seg_width=width, score=ann.get("score"),
                predicted_iou=ann.get("predicted_iou"), stability_score=ann.get("stability_score"),
                iscrowd=bool(ann.get("iscrowd", 0)),
            )
        )  # fmt: skip
    return rows


def import_coco(
    session: Session,
    *,
    dataset_name: str,
    coco: Path | Mapping[str, Any],
    source: str,
    chunk_images: int = 500,
) -> ImportStats:
    """Import a COCO instances document (ground truth or earlier labels) idempotently.

    Args:
        session: Caller's session (not committed here).
        dataset_name: Dataset to import into (created if missing).
        coco: Path of a COCO JSON file, or the parsed document.
        source: Stable name of the source (e.g. "val2017-gt"); its hash is the work key.
        chunk_images: Images per database write.

    Raises:
        FormatError: The document is malformed (message names the problem).
    """
    doc = read_coco(coco) if isinstance(coco, Path) else read_coco(coco, name=source)
    dataset_id = get_or_create_dataset(session, name=dataset_name)
    names = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
    db_cats = ensure_categories(
        session,
        dataset_id=dataset_id,
        names={str(c["name"]): c.get("supercategory") for c in doc["categories"]},
    )
    cat_ids = {cid: db_cats[name] for cid, name in names.items()}
    by_image: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for ann in doc["annotations"]:
        by_image[ann["image_id"]].append(ann)
    work_key = import_work_key(source)
    inserted = 0
    images = doc["images"]
    for start in range(0, len(images), chunk_images):
        inserted += _import_chunk(
            session, images[start : start + chunk_images], by_image, dataset_id, work_key, cat_ids
        )
    return ImportStats(
        dataset_id=dataset_id,
        work_key=work_key,
        n_images=len(images),
        n_annotations_inserted=inserted,
        n_categories=len(cat_ids),
    )


def _import_chunk(
    session: Session,
    images: Sequence[Mapping[str, Any]],
    by_image: Mapping[int, Sequence[Mapping[str, Any]]],
    dataset_id: int,
    work_key: str,
    cat_ids: Mapping[int, int],
) -> int:
    sizes = {str(im["file_name"]): _image_size(im, str(im.get("file_name"))) for im in images}
    known = _image_etags(session, dataset_id, list(sizes))
    register_images(
        session,
        dataset_id=dataset_id,
        images=[
            ImageIn(storage_key=k, height=h, width=w)
            for k, (h, w) in sizes.items()
            if k not in known
        ],
    )
    known = _image_etags(session, dataset_id, list(sizes))
    rows: list[AnnotationIn] = []
    outcomes = []
    for im in images:
        image_id, etag = known[str(im["file_name"])]
        size = sizes[str(im["file_name"])]
        anns = _to_rows(by_image.get(im["id"], ()), image_id=image_id, size=size, cat_ids=cat_ids)
        rows.extend(anns)
        outcomes.append(
            ImageOutcome(
                image_id=image_id, etag=etag, status=ResultStatus.DONE, annotations=tuple(anns)
            )
        )
    inserted = write_annotations(
        session,
        dataset_id=dataset_id,
        work_key=work_key,
        run_id=None,
        annotations=rows,
        replace_image_ids=[image_id for image_id, _ in known.values()],
    )
    record_image_results(session, run_id=None, work_key=work_key, outcomes=outcomes)
    return inserted


def _image_etags(session: Session, dataset_id: int, keys: list[str]) -> dict[str, tuple[int, str]]:
    """storage_key -> (image id, etag) of the dataset's images among `keys` (existing etags are
    kept: an import never marks a pipeline-registered image as changed)."""
    rows = session.execute(
        select(Image.storage_key, Image.id, Image.etag).where(
            Image.dataset_id == dataset_id, Image.storage_key.in_(keys)
        )
    )
    return {key: (image_id, etag) for key, image_id, etag in rows}
