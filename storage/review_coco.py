"""COCO instances layouts that CVAT (through datumaro) and FiftyOne import.

Both take the COCO export's records (`autolabel.storage.coco`): `file_name` relative to the
image root, never a URL (`coco_file_name`), the full storage URL as `coco_url`, and masks and
boxes fitted to their image (`autolabel.storage.mask_clip`). They differ in layout and in where
the scores go:

- CVAT "COCO 1.0" (datumaro `coco_instances`): `<root>/annotations/instances_default.json`, images
  under `<root>/images/default/<file_name>`. Scores go in each annotation's `attributes`
  (`score`, `predicted_iou`, `stability_score`, with CVAT's `occluded`), which datumaro keeps; the
  detector score is also written as the top-level `score`. CVAT gives imported annotations new
  ids, so our id also goes in `attributes` as `autolabel_id`.
- FiftyOne `COCODetectionDataset`: `<root>/labels.json`, images under `<root>/data/<file_name>`
  or, without copies, `<root>/data_map.json` (file_name -> local path or URL) to pass as
  `data_path`. `score` becomes the detection's confidence; `predicted_iou` and `stability_score`
  are top-level fields, which FiftyOne keeps as detection attributes, and so is our id
  (`autolabel_id`).

`reviewed_coco` reads such a file back after review (CVAT's COCO 1.0 export, or FiftyOne's
`COCODetectionDataset` export of the reviewed field): every image in it is reviewed, every
annotation is an object it holds; `autolabel_id` (in `attributes` or top-level) names the
prediction an object started as.
"""

from collections.abc import Mapping
from typing import Any, Literal

from autolabel.storage.coco import (
    annotation_record,
    coco_file_name,
    image_record,
    segmentation_to_rle,
)
from autolabel.storage.errors import FormatError
from autolabel.storage.mask_clip import FittedInstance
from autolabel.storage.review_items import ReviewedImageItems, ReviewedItem

ReviewCocoFlavor = Literal["cvat", "fiftyone"]

CVAT_ANNOTATIONS = "annotations/instances_default.json"
CVAT_IMAGES = "images/default"
FIFTYONE_LABELS = "labels.json"
FIFTYONE_DATA = "data"
FIFTYONE_DATA_MAP = "data_map.json"
#: CVAT renumbers annotations on import: our id travels as this attribute (declare it on the
#: task's labels so that CVAT keeps it) and comes back in CVAT's exports.
CVAT_ID_ATTRIBUTE = "autolabel_id"


def annotations_path(flavor: ReviewCocoFlavor) -> str:
    """Where the instances JSON goes, relative to the export root."""
    return CVAT_ANNOTATIONS if flavor == "cvat" else FIFTYONE_LABELS


def images_folder(flavor: ReviewCocoFlavor) -> str:
    """The folder, relative to the export root, that image copies go under (by file_name)."""
    return CVAT_IMAGES if flavor == "cvat" else FIFTYONE_DATA


def review_image_record(
    *, image_id: int, storage_key: str, width: int, height: int, image_root: str | None
) -> dict[str, Any]:
    """An `images` entry: `file_name` relative to `image_root`, `coco_url` the storage URL."""
    return image_record(
        image_id=image_id,
        file_name=coco_file_name(storage_key, image_root=image_root),
        width=width,
        height=height,
        coco_url=storage_key,
    )


def review_annotation_record(
    *,
    flavor: ReviewCocoFlavor,
    annotation_id: int,
    image_id: int,
    category_id: int,
    fitted: FittedInstance,
    iscrowd: bool,
    score: float | None,
    predicted_iou: float | None,
    stability_score: float | None,
) -> dict[str, Any]:
    """An `annotations` entry of a fitted instance, scores placed for `flavor`."""
    scores = {
        name: float(value)
        for name, value in (
            ("score", score),
            ("predicted_iou", predicted_iou),
            ("stability_score", stability_score),
        )
        if value is not None
    }
    if flavor == "cvat":
        attributes = {"occluded": False, **scores, CVAT_ID_ATTRIBUTE: annotation_id}
        extra: dict[str, Any] = {"attributes": attributes}
    else:
        extra = {k: v for k, v in scores.items() if k != "score"}
        extra[CVAT_ID_ATTRIBUTE] = annotation_id
    return annotation_record(
        annotation_id=annotation_id,
        image_id=image_id,
        category_id=category_id,
        bbox_xywh_px=fitted.bbox_xywh_px,
        area=fitted.area,
        segmentation=fitted.rle,
        iscrowd=iscrowd,
        score=score,
        extra=extra,
    )


def _our_id(ann: Mapping[str, Any]) -> int | None:
    attributes = ann.get("attributes")
    value = attributes.get(CVAT_ID_ATTRIBUTE) if isinstance(attributes, Mapping) else None
    value = ann.get(CVAT_ID_ATTRIBUTE) if value is None else value
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        raise FormatError(f"expected an integer {CVAT_ID_ATTRIBUTE}, got {value!r}") from None


def _item(
    ann: Mapping[str, Any], image: Mapping[str, Any], names: Mapping[Any, str]
) -> ReviewedItem:
    if ann.get("category_id") not in names:
        raise FormatError(f"expected a known category_id, got {ann.get('category_id')!r}")
    height, width = int(image["height"]), int(image["width"])
    if "segmentation" not in ann or not ann["segmentation"]:
        raise FormatError("expected a mask (segmentation); boxes alone are not objects here")
    return ReviewedItem(
        annotation_id=_our_id(ann),
        category=names[ann["category_id"]],
        rle=segmentation_to_rle(ann["segmentation"], height=height, width=width),
        item_key=str(ann.get("id", "")),
        outline=isinstance(ann["segmentation"], list),
    )


def reviewed_coco(doc: Any) -> list[ReviewedImageItems]:
    """The reviewed images of a COCO instances file exported by CVAT or FiftyOne.

    Raises:
        FormatError: Not COCO instances, or an annotation that cannot be read (named).
    """
    if not isinstance(doc, Mapping) or not all(k in doc for k in ("images", "annotations")):
        raise FormatError("expected a COCO instances file with images and annotations")
    names = {c["id"]: str(c["name"]) for c in doc.get("categories", [])}
    images = {img["id"]: img for img in doc["images"]}
    items: dict[Any, list[ReviewedItem]] = {i: [] for i in images}
    for ann in doc["annotations"]:
        if ann.get("image_id") not in images:
            raise FormatError(
                f"annotation {ann.get('id')!r}: unknown image_id {ann.get('image_id')!r}"
            )
        try:
            items[ann["image_id"]].append(_item(ann, images[ann["image_id"]], names))
        except (FormatError, KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"annotation {ann.get('id')!r}: {exc}") from None
    return [
        ReviewedImageItems(
            image_id=None,
            image_key=str(img.get("coco_url") or img.get("file_name") or ""),
            width=int(img.get("width", 0)),
            height=int(img.get("height", 0)),
            items=tuple(items[i]),
        )
        for i, img in images.items()
    ]
