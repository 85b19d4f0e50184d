"""COCO import into the annotation database, idempotent.

Loads one COCO file, maps its categories by name and its images to storage keys
(`autolabel.storage.coco.image_storage_key`: a URL `file_name`, a storage `coco_url`, or a
`file_name` below `image_root`), and stores annotations under a work key derived from `source`:
importing the same source again replaces, never duplicates.
"""

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autolabel.storage.coco import (
    image_storage_key,
    read_coco,
    segmentation_to_rle,
)
from autolabel.storage.db.bulk import write_annotations
from autolabel.storage.db.image_results import record_image_results
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import (
    ensure_categories,
    get_or_create_dataset,
    register_images,
)
from autolabel.storage.db.tables import (
    Image,
    ResultStatus,
)
from autolabel.storage.errors import FormatError
from autolabel.storage.rle import rle_areas, rle_bboxes


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportStats:
    """What an import stored."""

    dataset_id: int
    work_key: str
    n_images: int
    n_annotations_inserted: int
    n_categories: int


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
                image_id=image_id,
                category_id=cat_ids[ann["category_id"]],
                instance_index=index,
                bbox_xywh_px=(bbox[0], bbox[1], bbox[2], bbox[3]),
                area=float(ann.get("area", areas[index])),
                seg_counts=rle["counts"],
                seg_height=height,
                seg_width=width,
                score=ann.get("score"),
                predicted_iou=ann.get("predicted_iou"),
                stability_score=ann.get("stability_score"),
                iscrowd=bool(ann.get("iscrowd", 0)),
            )
        )
    return rows


def import_coco(
    session: Session,
    *,
    dataset_name: str,
    coco: Path | Mapping[str, Any],
    source: str,
    image_root: str | None = None,
    chunk_images: int = 500,
) -> ImportStats:
    """Import a COCO instances document (ground truth or earlier labels) idempotently.

    Images map to storage keys by `autolabel.storage.coco.image_storage_key`: a URL `file_name`
    (old exports), a storage `coco_url` (ours), `file_name` below `image_root`, or `file_name`.

    Args:
        session: Caller's session (not committed here).
        dataset_name: Dataset to import into (created if missing).
        coco: Path of a COCO JSON file, or the parsed document.
        source: Stable name of the source (e.g. "val2017-gt"); its hash is the work key.
        image_root: Store URL below which relative `file_name`s lie (e.g. `s3://bucket/raw/`).
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
    keyed = [(im, image_storage_key(im, image_root=image_root)) for im in images]
    for at in range(0, len(keyed), chunk_images):
        chunk = keyed[at : at + chunk_images]
        inserted += _import_chunk(session, chunk, by_image, dataset_id, work_key, cat_ids)
    return ImportStats(
        dataset_id=dataset_id,
        work_key=work_key,
        n_images=len(images),
        n_annotations_inserted=inserted,
        n_categories=len(cat_ids),
    )


def _import_chunk(
    session: Session,
    images: Sequence[tuple[Mapping[str, Any], str]],
    by_image: Mapping[int, Sequence[Mapping[str, Any]]],
    dataset_id: int,
    work_key: str,
    cat_ids: Mapping[int, int],
) -> int:
    sizes = {key: _image_size(im, key) for im, key in images}
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
    for im, key in images:
        image_id, etag = known[key]
        size = sizes[key]
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
