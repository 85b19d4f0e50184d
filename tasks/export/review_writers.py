"""The review-export documents, written from streamed stored rows (no Prefect, no database).

Each writer takes the stream of `(ReviewImage, [ReviewInstance])` from
`autolabel.storage.db.review_rows.iter_review_images` and writes one JSON document into a text
stream, fitting every mask and box to its image first (`autolabel.storage.mask_clip`): the
stored rows are never changed. An image without a stored size takes its first mask's size.
"""

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from autolabel.storage.coco import CocoJsonWriter, category_record
from autolabel.storage.db.review_rows import ReviewImage, ReviewInstance
from autolabel.storage.label_studio import (
    DEFAULT_MODEL_VERSION,
    RegionShape,
    brush_region,
    polygon_regions,
    prediction,
    task,
)
from autolabel.storage.mask_clip import fit_instance, fit_mask
from autolabel.storage.review_coco import (
    ReviewCocoFlavor,
    review_annotation_record,
    review_image_record,
)
from autolabel.storage.rle import decode_rle

ReviewRows = Iterable[tuple[ReviewImage, list[ReviewInstance]]]
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@dataclass(slots=True)
class WriteCounts:
    """What a writer wrote: images, annotations, and how many instances had to be fitted."""

    images: int = 0
    annotations: int = 0
    fitted: int = 0


def image_size(image: ReviewImage, instances: list[ReviewInstance]) -> tuple[int, int]:
    """(height, width) of the image in pixels: as stored, else its first mask's size."""
    if image.height > 0 and image.width > 0:
        return image.height, image.width
    if instances:
        height, width = (int(s) for s in instances[0].rle["size"])
        return height, width
    return 0, 0


def _label_studio_predictions(
    instances: list[ReviewInstance],
    *,
    height: int,
    width: int,
    categories: Mapping[int, str],
    counts: WriteCounts,
    shape: RegionShape,
) -> list[dict[str, Any]]:
    """One prediction per model version, in order of first appearance."""
    by_version: dict[str, list[dict[str, Any]]] = {}
    for inst in instances:
        stored = decode_rle(inst.rle)
        mask = fit_mask(stored, height=height, width=width)
        counts.fitted += mask is not stored
        pairs = (("predicted_iou", inst.predicted_iou), ("stability_score", inst.stability_score))
        meta = {k: v for k, v in pairs if v is not None}
        make = (lambda **kw: [brush_region(**kw)]) if shape == "brush" else polygon_regions
        regions = make(
            annotation_id=inst.annotation_id,
            label=categories[inst.category_id],
            mask_hw=mask,
            score=inst.score,
            meta=meta,
        )
        by_version.setdefault(inst.model_version or DEFAULT_MODEL_VERSION, []).extend(regions)
        counts.annotations += 1
    return [prediction(version, regions) for version, regions in by_version.items()]


def write_label_studio_tasks(
    stream: IO[str],
    rows: ReviewRows,
    *,
    categories: Mapping[int, str],
    image_url: Callable[[str], str],
    shape: RegionShape = "brush",
) -> WriteCounts:
    """Write a Label Studio tasks JSON list: one task per image (see
    `autolabel.storage.label_studio`), brush (or polygon) regions fitted to the image.

    Args:
        stream: Text stream receiving the JSON array.
        rows: Images with their instances, by image id.
        categories: Category id -> name (the labeling config's labels).
        image_url: Storage URL -> the URL Label Studio opens (`ReviewImageUrls`).
    """
    counts = WriteCounts()
    stream.write("[")
    for image, instances in rows:
        height, width = image_size(image, instances)
        predictions = _label_studio_predictions(
            instances,
            height=height,
            width=width,
            categories=categories,
            counts=counts,
            shape=shape,
        )
        record = task(
            image_url=image_url(image.storage_key),
            image_id=image.image_id,
            storage_url=image.storage_key,
            predictions=predictions,
        )
        stream.write(("\n" if counts.images == 0 else ",\n") + _DUMPS(record))
        counts.images += 1
    stream.write("\n]\n")
    return counts


def _coco_annotations(
    image: ReviewImage,
    instances: list[ReviewInstance],
    flavor: ReviewCocoFlavor,
    counts: WriteCounts,
) -> Iterator[str]:
    height, width = image_size(image, instances)
    for inst in instances:
        fitted = fit_instance(inst.rle, inst.bbox_xywh_px, inst.area, height=height, width=width)
        counts.fitted += fitted.changed
        yield _DUMPS(
            review_annotation_record(
                flavor=flavor,
                annotation_id=inst.annotation_id,
                image_id=image.image_id,
                category_id=inst.category_id,
                fitted=fitted,
                iscrowd=inst.iscrowd,
                score=inst.score,
                predicted_iou=inst.predicted_iou,
                stability_score=inst.stability_score,
            )
        )


def write_review_coco(
    stream: IO[str],
    rows: ReviewRows,
    *,
    flavor: ReviewCocoFlavor,
    categories: Iterable[tuple[int, str, str | None]],
    image_root: str | None,
    on_image: Callable[[ReviewImage, str], None] | None = None,
) -> WriteCounts:
    """Write COCO instances JSON for CVAT or FiftyOne (see `autolabel.storage.review_coco`).

    Images stream into the document while their annotations are spooled to a temporary file,
    which follows them (COCO puts all images before all annotations), so memory stays flat.

    Args:
        stream: Text stream receiving the document.
        rows: Images with their instances, by image id.
        flavor: "cvat" or "fiftyone" (where the scores go).
        categories: (id, name, supercategory) of the dataset's categories.
        image_root: Store URL the `file_name`s are relative to.
        on_image: Called with each image and its `file_name` (e.g. to copy the image).
    """
    counts = WriteCounts()
    writer = CocoJsonWriter(
        stream,
        categories=[
            category_record(category_id=i, name=n, supercategory=s) for i, n, s in categories
        ],
        info={"description": "autolabel review export", "version": "1.0"},
    )
    with tempfile.TemporaryFile("w+", encoding="utf-8", suffix=".jsonl") as spool:
        images = []
        for image, instances in rows:
            height, width = image_size(image, instances)
            record = review_image_record(
                image_id=image.image_id,
                storage_key=image.storage_key,
                width=width,
                height=height,
                image_root=image_root,
            )
            images.append(_DUMPS(record))
            if on_image is not None:
                on_image(image, record["file_name"])
            for line in _coco_annotations(image, instances, flavor, counts):
                spool.write(line + "\n")
                counts.annotations += 1
            if len(images) >= 1000:
                writer.write_raw("images", images)
                images.clear()
        writer.write_raw("images", images)
        spool.seek(0)
        writer.write_raw("annotations", (line.rstrip("\n") for line in spool))
    writer.close()
    counts.images = writer.n_images
    return counts
