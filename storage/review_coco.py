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
  are top-level fields, which FiftyOne keeps as detection attributes.
"""

from typing import Any, Literal

from autolabel.storage.coco import annotation_record, coco_file_name, image_record
from autolabel.storage.mask_clip import FittedInstance

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
