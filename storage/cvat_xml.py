"""CVAT for images 1.1 XML, read back after review.

Each `<image name= width= height=>` of the file is a reviewed image; each `<mask>` and
`<polygon>` in it is an object (`<box>` and other shapes are listed as skipped: they hold no
mask). A mask's `rle` holds run lengths over its box (`left`, `top`, `width`, `height`), row by
row, starting with a run of background; a polygon's `points` are `x,y;x,y;...` in pixels. The
`autolabel_id` attribute (kept when the CVAT task declares it) names the prediction an object
started as. The file comes from outside, so it is parsed with `defusedxml` (no entity expansion).
"""

from typing import Any

import numpy as np
import numpy.typing as npt
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from autolabel.storage.errors import FormatError
from autolabel.storage.review_coco import CVAT_ID_ATTRIBUTE
from autolabel.storage.review_items import ReviewedImageItems, ReviewedItem
from autolabel.storage.rle import encode_mask, polygons_to_rle


def _int(element: Any, name: str) -> int:
    try:
        return round(float(element.attrib[name]))
    except (KeyError, ValueError):
        raise FormatError(f"expected a number {name}= on <{element.tag}>") from None


def _mask_from_runs(element: Any, height: int, width: int) -> npt.NDArray[np.bool_]:
    left, top = _int(element, "left"), _int(element, "top")
    box_w, box_h = _int(element, "width"), _int(element, "height")
    try:
        runs = [int(v) for v in element.attrib.get("rle", "").split(",") if v.strip()]
    except ValueError:
        raise FormatError("expected comma-separated run lengths in rle=") from None
    if sum(runs) != box_w * box_h or min(runs, default=0) < 0:
        raise FormatError(f"expected rle= runs covering its {box_w}x{box_h} box, got {sum(runs)}")
    values = np.repeat(np.arange(len(runs)) % 2 == 1, runs).reshape(box_h, box_w)
    mask = np.zeros((height, width), dtype=np.bool_)
    rows = slice(max(top, 0), min(top + box_h, height))
    cols = slice(max(left, 0), min(left + box_w, width))
    mask[rows, cols] = values[
        rows.start - top : rows.stop - top, cols.start - left : cols.stop - left
    ]
    return mask


def _our_id(element: Any) -> int | None:
    for attribute in element.findall("attribute"):
        if attribute.get("name") == CVAT_ID_ATTRIBUTE and (attribute.text or "").strip():
            try:
                return int(str(attribute.text).strip())
            except ValueError:
                raise FormatError(
                    f"expected an integer {CVAT_ID_ATTRIBUTE}, got {attribute.text!r}"
                ) from None
    return None


def _item(element: Any, number: int, height: int, width: int) -> ReviewedItem | str:
    if element.tag == "mask":
        rle = encode_mask(_mask_from_runs(element, height, width))
    elif element.tag == "polygon":
        try:
            points = [
                float(c) for pair in element.attrib["points"].split(";") for c in pair.split(",")
            ]
        except (KeyError, ValueError):
            raise FormatError("expected points= as x,y;x,y;... on <polygon>") from None
        rle = polygons_to_rle([points], height, width)
    else:
        return f"<{element.tag}> {number} (only masks and polygons are objects)"
    label = element.get("label")
    if not label:
        raise FormatError(f"expected label= on <{element.tag}>")
    return ReviewedItem(
        annotation_id=_our_id(element),
        category=label,
        rle=rle,
        item_key=f"{element.tag}-{number}",
        outline=element.tag == "polygon",
    )


def reviewed_cvat_xml(data: bytes) -> list[ReviewedImageItems]:
    """The reviewed images of a CVAT for images 1.1 XML file.

    Raises:
        FormatError: Not such a file, or a shape that cannot be read (named by image and shape).
    """
    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise FormatError(f"expected CVAT for images 1.1 XML, got unreadable XML: {exc}") from None
    if root.tag != "annotations":
        raise FormatError(f"expected CVAT for images XML (<annotations>), got <{root.tag}>")
    out = []
    for image in root.iter("image"):
        name = image.get("name", "")
        height, width = _int(image, "height"), _int(image, "width")
        items: list[ReviewedItem] = []
        skipped: list[str] = []
        for number, element in enumerate(image):
            try:
                item = _item(element, number, height, width)
            except FormatError as exc:
                raise FormatError(f"image {name!r}, <{element.tag}> {number}: {exc}") from None
            if isinstance(item, str):
                skipped.append(item)
            else:
                items.append(item)
        out.append(
            ReviewedImageItems(
                image_id=None,
                image_key=name,
                width=width,
                height=height,
                items=tuple(items),
                skipped=tuple(skipped),
            )
        )
    return out
