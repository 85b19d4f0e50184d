"""Conversion between SA-1B records and COCO instances documents (class-agnostic, ids kept)."""

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage  # type: ignore[import-untyped]

from autolabel.storage.coco import (
    annotation_record,
    category_record,
    image_record,
    read_coco,
    segmentation_to_rle,
)
from autolabel.storage.errors import FormatError
from autolabel.storage.rle import decode_rle, rle_areas, rle_bboxes
from autolabel.storage.sa1b import Sa1bAnnotation, Sa1bImage, Sa1bRecord, as_box_xywh


def _interior_point(mask_hw: npt.NDArray[np.bool_]) -> tuple[tuple[float, float], ...]:
    """The mask pixel farthest from the background, as one [x, y] prompt (pixel center)."""
    if not mask_hw.any():
        return ()
    depth = ndimage.distance_transform_edt(np.pad(mask_hw, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return ((float(col) + 0.5, float(row) + 0.5),)


def coco_to_sa1b(doc: Mapping[str, Any]) -> Iterator[Sa1bRecord]:
    """SA-1B records of a COCO instances document (one per image, ids kept).

    Ground truth has no model scores: `predicted_iou` and `stability_score` default to 1.0 unless
    the annotation carries them; `point_coords` defaults to the mask's most interior pixel (so it
    can serve as a training prompt); `crop_box` to the whole image. Crowd annotations are kept.

    Raises:
        FormatError: A malformed document or segmentation.
    """
    coco = read_coco(doc)
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for im in coco["images"]:
        height, width = int(im["height"]), int(im["width"])
        anns = by_image.get(im["id"], [])
        rles = [segmentation_to_rle(a["segmentation"], height=height, width=width) for a in anns]
        areas, boxes = rle_areas(rles), rle_bboxes(rles)
        yield Sa1bRecord(
            image=Sa1bImage(
                image_id=int(im["id"]), width=width, height=height, file_name=im["file_name"]
            ),
            annotations=tuple(
                Sa1bAnnotation(
                    id=int(a["id"]),
                    segmentation=rle,
                    bbox_xywh_px=as_box_xywh(a.get("bbox") or boxes[i].tolist(), "bbox"),
                    area=float(a.get("area", areas[i])),
                    predicted_iou=float(a.get("predicted_iou", 1.0)),
                    stability_score=float(a.get("stability_score", 1.0)),
                    point_coords=tuple((float(p[0]), float(p[1])) for p in a["point_coords"])
                    if a.get("point_coords")
                    else _interior_point(decode_rle(rle)),
                    crop_box=as_box_xywh(a.get("crop_box", [0, 0, width, height]), "crop_box"),
                )
                for i, (a, rle) in enumerate(zip(anns, rles, strict=True))
            ),
        )


def sa1b_to_coco(records: Iterable[Sa1bRecord], *, category_name: str = "object") -> dict[str, Any]:
    """A COCO instances document of SA-1B records (class-agnostic: one category, id 1).

    SA-1B fields without a COCO equivalent (predicted_iou, stability_score, point_coords,
    crop_box) are kept as extra annotation keys, so `coco_to_sa1b` restores them.

    Raises:
        FormatError: Two annotations share an id, or an id is below 1 (COCOeval treats id 0
            as "unmatched", which silently lowers scores).
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    seen: set[int] = set()
    for record in records:
        img = record.image
        images.append(
            image_record(
                image_id=img.image_id, file_name=img.file_name, width=img.width, height=img.height
            )
        )
        for a in record.annotations:
            if a.id in seen or a.id < 1:
                raise FormatError(f"expected unique SA-1B annotation ids >= 1, got {a.id}")
            seen.add(a.id)
            extra = {
                "predicted_iou": a.predicted_iou,
                "stability_score": a.stability_score,
                "point_coords": [list(p) for p in a.point_coords],
                "crop_box": list(a.crop_box),
            }
            annotations.append(
                annotation_record(
                    annotation_id=a.id,
                    image_id=img.image_id,
                    category_id=1,
                    bbox_xywh_px=a.bbox_xywh_px,
                    area=a.area,
                    segmentation=a.segmentation,
                    extra=extra,
                )
            )
    categories = [category_record(category_id=1, name=category_name)]
    return {"images": images, "annotations": annotations, "categories": categories}
