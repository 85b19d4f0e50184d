"""Scripted reviews of our own review exports, as each tool would hand them back.

The edits, on the dataset of `tests.unit.tasks.export.review_data` (exported: a.png's dog blob
and dog rectangle, b.png's tall cat and wide dog; c.png has none):
- a.png: the dog blob kept as is (accepted), the dog rectangle redrawn (corrected), a new cat drawn
  (added);
- b.png: the tall cat kept (accepted: its export was fitted to the image, so it is the stored
  mask on the image), the wide dog deleted (rejected);
- c.png: left alone (Label Studio: not reviewed; COCO files: reviewed, nothing to decide).
"""

import copy
from typing import Any

import numpy as np
import numpy.typing as npt

from autolabel.storage.brush_rle import encode_brush
from autolabel.storage.rle import decode_rle, encode_mask
from tests.unit.tasks.export.review_data import SIZES

ADDED_CAT = (slice(3, 12), slice(4, 20))  # rows, columns of the cat a reviewer draws on a.png
REDRAWN_DOG = (slice(28, 38), slice(30, 50))


def _mask(name: str, where: tuple[slice, slice]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(SIZES[name], dtype=np.bool_)
    mask[where] = True
    return mask


def label_studio_review(
    tasks: list[dict[str, Any]], *, rect_id: int, wide_id: int
) -> list[dict[str, Any]]:
    """Label Studio's JSON export after a reviewer worked through the first two tasks."""
    out = copy.deepcopy(tasks)
    for number, task in enumerate(out, start=1):
        task["id"] = number
        regions = [r for p in task["predictions"] for r in p["result"]]
        if number == 3:
            task["annotations"] = []
            continue
        result = []
        for region in regions:
            if region["id"] == f"a{wide_id}":
                continue  # deleted
            if region["id"] == f"a{rect_id}":
                region["value"]["rle"] = encode_brush(_mask("a.png", REDRAWN_DOG))
            result.append(region)
        if number == 1:
            new = copy.deepcopy(result[0])
            new["id"] = "Xk3_9aQ"
            new.pop("meta")
            new.pop("score")
            new["value"] = {
                "format": "rle",
                "rle": encode_brush(_mask("a.png", ADDED_CAT)),
                "brushlabels": ["cat"],
            }
            result.append(new)
        task["annotations"] = [
            {
                "id": 10 + number,
                "completed_by": 7,
                "created_username": "ann@example.com, 7",
                "was_cancelled": False,
                "created_at": "2026-12-01T10:00:00.000000Z",
                "updated_at": f"2026-12-01T10:0{number}:00.000000Z",
                "result": result,
            }
        ]
    return out


def coco_review(
    doc: dict[str, Any], *, rect_id: int, wide_id: int, keep_ids: bool = True
) -> dict[str, Any]:
    """A CVAT (COCO 1.0) or FiftyOne export after the same review; `keep_ids=False`: the tool
    dropped our id attribute (CVAT without the attribute declared)."""
    out = copy.deepcopy(doc)
    image_a = next(i["id"] for i in out["images"] if i["file_name"].endswith("a.png"))
    anns = []
    for ann in out["annotations"]:
        ours = ann.get("attributes", {}).get("autolabel_id", ann.get("autolabel_id"))
        if ours == wide_id:
            continue
        if ours == rect_id:
            ann["segmentation"] = encode_mask(_mask("a.png", REDRAWN_DOG))
        if not keep_ids:
            ann.pop("autolabel_id", None)
            ann.get("attributes", {}).pop("autolabel_id", None)
        anns.append(ann)
    cat = next(c["id"] for c in out["categories"] if c["name"] == "cat")
    x0, x1 = ADDED_CAT[1].start, ADDED_CAT[1].stop
    y0, y1 = ADDED_CAT[0].start, ADDED_CAT[0].stop
    polygon = [x0, y0, x1, y0, x1, y1, x0, y1]
    anns.append(
        {"id": 999, "image_id": image_a, "category_id": cat, "segmentation": [polygon],
         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
    )  # fmt: skip
    out["annotations"] = anns
    return out


def added_cat_mask() -> npt.NDArray[np.bool_]:
    """The cat a reviewer draws on a.png."""
    return _mask("a.png", ADDED_CAT)


def redrawn_dog_mask() -> npt.NDArray[np.bool_]:
    """The dog rectangle as a reviewer redraws it on a.png."""
    return _mask("a.png", REDRAWN_DOG)


def mask_of(counts: str, height: int, width: int) -> npt.NDArray[np.bool_]:
    """A stored mask."""
    return decode_rle({"size": [height, width], "counts": counts})


def _runs(mask: npt.NDArray[np.bool_]) -> tuple[list[int], tuple[int, int, int, int]]:
    """CVAT's mask runs over the mask's tight box, row by row, background first."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, left, bottom, right = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
    flat = mask[top:bottom, left:right].ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), flat.size]
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0, *runs]
    return runs, (int(left), int(top), int(right - left), int(bottom - top))


def cvat_xml(doc: dict[str, Any]) -> bytes:
    """A COCO review file (`coco_review`) written as CVAT for images 1.1 XML, as CVAT exports
    it: RLE masks as `<mask>`, polygons as `<polygon>`, our id as an attribute, plus a `<box>`."""
    from xml.sax.saxutils import quoteattr

    names = {c["id"]: c["name"] for c in doc["categories"]}
    parts = ["<?xml version='1.0' encoding='utf-8'?>", "<annotations><version>1.1</version>"]
    for image in doc["images"]:
        h, w = image["height"], image["width"]
        parts.append(
            f'<image id="{image["id"]}" name={quoteattr(image["file_name"])} '
            f'width="{w}" height="{h}">'
        )
        for ann in (a for a in doc["annotations"] if a["image_id"] == image["id"]):
            label = quoteattr(names[ann["category_id"]])
            ours = ann.get("attributes", {}).get("autolabel_id")
            attr = "" if ours is None else f'<attribute name="autolabel_id">{ours}</attribute>'
            seg = ann["segmentation"]
            if isinstance(seg, list):
                xy = seg[0]
                points = ";".join(f"{xy[i]:.2f},{xy[i + 1]:.2f}" for i in range(0, len(xy), 2))
                parts.append(
                    f'<polygon label={label} source="manual" occluded="0" points="{points}" '
                    f'z_order="0">{attr}</polygon>'
                )
                continue
            mask = decode_rle({"size": seg["size"], "counts": seg["counts"]})
            runs, (left, top, bw, bh) = _runs(mask)
            parts.append(
                f'<mask label={label} source="semi-auto" occluded="0" '
                f'rle="{", ".join(map(str, runs))}" '
                f'left="{left}" top="{top}" width="{bw}" height="{bh}" z_order="0">{attr}</mask>'
            )
        if image["file_name"].endswith("c.png"):
            parts.append(
                '<box label="cat" source="manual" occluded="0" xtl="1" ytl="1" xbr="5" ybr="5" '
                'z_order="0"/>'
            )
        parts.append("</image>")
    parts.append("</annotations>")
    return "\n".join(parts).encode()
