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
