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

`reviewed_tasks` reads Label Studio's JSON export back: per task, the latest annotation that was
not skipped is the review; its `brushlabels` and `polygonlabels` regions are the objects the
image holds (regions of other types are listed as skipped).
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np
import numpy.typing as npt

from autolabel.storage.brush_rle import decode_brush, encode_brush
from autolabel.storage.errors import FormatError
from autolabel.storage.review_items import ReviewedImageItems, ReviewedItem
from autolabel.storage.rle import decode_rle, encode_mask, mask_to_polygons, polygons_to_rle

FROM_NAME = "tag"
TO_NAME = "image"
REGION_ID_PREFIX = "a"
DEFAULT_MODEL_VERSION = "autolabel"


RegionShape = Literal["brush", "polygon"]
_CONTROLS: dict[RegionShape, str] = {"brush": "BrushLabels", "polygon": "PolygonLabels"}


def labeling_config(category_names: Sequence[str], shape: RegionShape = "brush") -> str:
    """The labeling interface XML: an image, and brush (or polygon) labels, one per category."""
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in category_names)
    control = _CONTROLS[shape]
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="${TO_NAME}" zoom="true"/>\n'
        f'  <{control} name="{FROM_NAME}" toName="{TO_NAME}">{labels}\n'
        f"  </{control}>\n"
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


def polygon_regions(
    *,
    annotation_id: int,
    label: str,
    mask_hw: npt.NDArray[np.bool_],
    score: float | None,
    meta: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`polygonlabels` regions of a mask: one per outer boundary (Label Studio polygons have one
    part and no holes), points in percent of the image; the first region's id is `a<id>`, the
    others `a<id>p<k>`, all with `meta.autolabel_annotation_id` (a review import unites them)."""
    height, width = mask_hw.shape
    regions = []
    for k, flat in enumerate(mask_to_polygons(mask_hw)):
        points = [
            [round(x * 100.0 / width, 6), round(y * 100.0 / height, 6)]
            for x, y in zip(flat[0::2], flat[1::2], strict=True)
        ]
        region: dict[str, Any] = {
            "id": region_id(annotation_id) + (f"p{k}" if k else ""),
            "type": "polygonlabels",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"points": points, "polygonlabels": [label], "closed": True},
            "meta": {"autolabel_annotation_id": annotation_id, **(meta or {})},
        }
        if score is not None:
            region["score"] = float(score)
        regions.append(region)
    return regions


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


def _label(region: Mapping[str, Any], kind: str) -> str:
    labels = region.get("value", {}).get(kind)
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        raise FormatError(f"expected one label in region {region.get('id')!r}, got {labels!r}")
    return labels[0]


def _region_item(region: Mapping[str, Any]) -> ReviewedItem | str:
    """The object a result region holds, or why it was skipped."""
    kind, rid = region.get("type"), str(region.get("id", ""))
    if kind not in ("brushlabels", "polygonlabels"):
        return f"region {rid!r} of type {kind!r} (only brush and polygon regions are objects)"
    try:
        width, height = int(region["original_width"]), int(region["original_height"])
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"expected original_width/height in region {rid!r}") from None
    value = region.get("value", {})
    if kind == "brushlabels":
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise FormatError(f"expected a brush RLE list in region {rid!r}")
        rle = encode_mask(decode_brush(value["rle"], height=height, width=width))
    else:
        points = value.get("points")
        if not isinstance(points, list) or len(points) < 3:
            raise FormatError(f"expected >= 3 polygon points in region {rid!r}")
        # Pixels to 1/1000 px: an outline we exported (percent to 6 decimals) comes back on
        # exactly its vertices, so an untouched polygon rasterizes to the same pixels.
        flat = [
            round(float(c) * scale / 100.0, 3)
            for x, y in points
            for c, scale in ((x, width), (y, height))
        ]
        rle = polygons_to_rle([flat], height, width)
    return ReviewedItem(
        annotation_id=annotation_id_of(region),
        category=_label(region, kind),
        rle=rle,
        item_key=rid,
        outline=kind == "polygonlabels",
    )


def _united(items: list[ReviewedItem]) -> list[ReviewedItem]:
    """One item per stored annotation: the parts of a polygon export (same annotation id and
    label) as one mask."""
    groups: dict[tuple[int, str], list[ReviewedItem]] = {}
    out: list[ReviewedItem] = []
    for item in items:
        if item.annotation_id is None:
            out.append(item)
        else:
            groups.setdefault((item.annotation_id, item.category), []).append(item)
    for parts in groups.values():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        mask = np.logical_or.reduce([decode_rle(p.rle) for p in parts])
        out.append(
            ReviewedItem(
                annotation_id=parts[0].annotation_id,
                category=parts[0].category,
                rle=encode_mask(mask),
                item_key="+".join(p.item_key for p in parts),
                outline=any(p.outline for p in parts),
            )
        )
    return out


def _reviewer(annotation: Mapping[str, Any]) -> str | None:
    """The annotator: a name or email where the export has one, else `label-studio user <id>`
    (Label Studio's JSON export names the annotator by user id: `"completed_by": 1`)."""
    who = annotation.get("created_username") or annotation.get("completed_by")
    if isinstance(who, Mapping):
        who = who.get("email") or who.get("id")
    text = None if who is None else str(who).strip(", ")
    if not text:
        return None
    return f"label-studio user {text}" if text.isdigit() else text


def _when(annotation: Mapping[str, Any]) -> datetime | None:
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def _shown_ids(task_doc: Mapping[str, Any]) -> frozenset[int] | None:
    predictions = task_doc.get("predictions") or []
    if not all(isinstance(p, Mapping) for p in predictions):
        return None  # an export that lists prediction ids only
    ids = {annotation_id_of(r) for p in predictions for r in p.get("result", [])}
    return frozenset(i for i in ids if i is not None)


def _reviewed_task(task_doc: Mapping[str, Any]) -> ReviewedImageItems | None:
    done = [
        a
        for a in task_doc.get("annotations") or []
        if isinstance(a, Mapping) and not a.get("was_cancelled")
    ]
    if not done:
        return None
    latest = max(
        done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0))
    )
    regions = [_region_item(region) for region in latest.get("result") or []]
    items = _united([r for r in regions if isinstance(r, ReviewedItem)])
    data = task_doc.get("data") or {}
    image_id = data.get("autolabel_image_id")
    sizes = {(i.rle["size"][1], i.rle["size"][0]) for i in items}
    width, height = sizes.pop() if len(sizes) == 1 else (0, 0)
    return ReviewedImageItems(
        image_id=image_id if isinstance(image_id, int) else None,
        image_key=str(data.get("autolabel_storage_url") or data.get(TO_NAME) or ""),
        width=width,
        height=height,
        items=tuple(items),
        shown_ids=_shown_ids(task_doc),
        reviewer=_reviewer(latest),
        reviewed_at=_when(latest),
        skipped=tuple(r for r in regions if isinstance(r, str)),
    )


def reviewed_tasks(doc: Any) -> list[ReviewedImageItems]:
    """The reviewed images of a Label Studio JSON export (a list of tasks); tasks nobody
    annotated (or only skipped) are not reviewed and left out.

    Raises:
        FormatError: Not a list of tasks, or a region that cannot be read (named).
    """
    if not isinstance(doc, list) or not all(isinstance(t, Mapping) for t in doc):
        raise FormatError("expected a Label Studio JSON export: a list of task objects")
    out = []
    for task_doc in doc:
        try:
            reviewed = _reviewed_task(task_doc)
        except FormatError as exc:
            raise FormatError(f"task {task_doc.get('id')!r}: {exc}") from None
        if reviewed is not None:
            out.append(reviewed)
    return out
