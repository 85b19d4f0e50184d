"""Label Studio's import format: a labeling config, and tasks whose predictions are brush regions.

One task per image. `data.image` is a URL the Label Studio server can open (see
`autolabel.storage.review_urls`); `data` also carries our image id and storage URL. Each task has
one prediction per model version among its annotations, holding one `brushlabels` region per
annotation:

    {"id": "a123", "type": "brushlabels", "from_name": "tag", "to_name": "image",
     "original_width": W, "original_height": H, "image_rotation": 0, "score": 0.83,
     "value": {"format": "rle", "rle": [...], "brushlabels": ["cat"]},
     "meta": {"autolabel_annotation_id": 123, "predicted_iou": 0.9, ...}}

`rle` is Label Studio's brush encoding of the image-sized mask (`autolabel.storage.brush_rle`).
The region id `a<annotation id>` (and `meta.autolabel_annotation_id`) is how a review import
finds the stored annotation a reviewed region came from. `from_name` / `to_name` match
`labeling_config`, which must be the project's labeling interface.
"""

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
import numpy.typing as npt

from autolabel.storage.brush_rle import encode_brush

FROM_NAME = "tag"
TO_NAME = "image"
REGION_ID_PREFIX = "a"
DEFAULT_MODEL_VERSION = "autolabel"


def labeling_config(category_names: Sequence[str]) -> str:
    """The labeling interface XML: an image, and brush labels, one per category name."""
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in category_names)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="${TO_NAME}" zoom="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">{labels}\n'
        "  </BrushLabels>\n"
        "</View>\n"
    )


def region_id(annotation_id: int) -> str:
    """The region id that names a stored annotation (`a123`)."""
    return f"{REGION_ID_PREFIX}{annotation_id}"


def annotation_id_of(region: Mapping[str, Any]) -> int | None:
    """The stored annotation id a region came from (its `meta`, else its `a<id>` id); None for
    a region a reviewer drew."""
    meta = region.get("meta")
    if isinstance(meta, Mapping) and isinstance(meta.get("autolabel_annotation_id"), int):
        return int(meta["autolabel_annotation_id"])
    rid = region.get("id")
    if isinstance(rid, str) and rid.startswith(REGION_ID_PREFIX) and rid[1:].isdigit():
        return int(rid[1:])
    return None


def brush_region(
    *,
    annotation_id: int,
    label: str,
    mask_hw: npt.NDArray[np.bool_],
    score: float | None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One `brushlabels` region of a prediction.

    Args:
        annotation_id: Stored annotation id (encoded in the region id and `meta`).
        label: Category name, one of the labeling config's labels.
        mask_hw: (H, W) bool mask of exactly the image's size, origin top-left.
        score: Region score (the detector's), when known.
        meta: More values kept with the region (e.g. predicted_iou).
    """
    height, width = mask_hw.shape
    region: dict[str, Any] = {
        "id": region_id(annotation_id),
        "type": "brushlabels",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush(mask_hw), "brushlabels": [label]},
        "meta": {"autolabel_annotation_id": annotation_id, **(meta or {})},
    }
    if score is not None:
        region["score"] = float(score)
    return region


def prediction(model_version: str, regions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A prediction: its regions, model version, and overall score (the regions' mean score;
    0.0 when no region has one)."""
    scores = [float(r["score"]) for r in regions if r.get("score") is not None]
    return {
        "model_version": model_version,
        "score": sum(scores) / len(scores) if scores else 0.0,
        "result": list(regions),
    }


def task(
    *,
    image_url: str,
    image_id: int,
    storage_url: str,
    predictions: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A task: the image to review and the predictions to start from."""
    return {
        "data": {
            TO_NAME: image_url,
            "autolabel_image_id": image_id,
            "autolabel_storage_url": storage_url,
        },
        "predictions": list(predictions),
    }
