"""Masks and boxes made to fit their image before they leave for a review tool.

A stored mask is normally exactly image-sized, but an RLE of another size (a mask one row larger
than its image made CVAT's COCO export crash, cvat#9316) or a box reaching past the border must
never reach a tool: `fit_mask` crops (or zero-pads) a mask to the image (`fit_rle` an RLE),
`clip_box` clips a box to the image rectangle, and `fit_instance` does both for a stored
instance, recomputing the area from the fitted mask whenever the mask changed. Nothing stored is
modified: these return copies.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autolabel.storage.rle import Rle, decode_rle, encode_mask, rle_areas

BoxXywh = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class FittedInstance:
    """An instance as exported: mask, box and area inside its image.

    Attributes:
        rle: Compressed COCO RLE of size [height, width] of the image.
        bbox_xywh_px: Box (x, y, width, height) in pixels, inside [0, width] x [0, height].
        area: Mask area in pixels (recomputed when the mask was cropped or padded).
        changed: Whether the mask or the box differs from the stored one.
    """

    rle: Rle
    bbox_xywh_px: BoxXywh
    area: float
    changed: bool


def fit_mask(mask_hw: npt.NDArray[np.bool_], *, height: int, width: int) -> npt.NDArray[np.bool_]:
    """The (height, width) bool mask that agrees with `mask_hw` on the image: rows and columns
    beyond the image are dropped, missing ones are background; the same array when it fits."""
    if mask_hw.shape == (height, width):
        return mask_hw
    fitted = np.zeros((height, width), dtype=np.bool_)
    rows, cols = min(height, mask_hw.shape[0]), min(width, mask_hw.shape[1])
    fitted[:rows, :cols] = mask_hw[:rows, :cols]
    return fitted


def fit_rle(rle: Rle, *, height: int, width: int) -> Rle:
    """`rle` as a (height, width) mask (`fit_mask`); the same RLE, not decoded, when it fits."""
    if [int(s) for s in rle["size"]] == [height, width]:
        return rle
    return encode_mask(fit_mask(decode_rle(rle), height=height, width=width))


def clip_box(bbox_xywh_px: BoxXywh, *, height: int, width: int) -> BoxXywh:
    """`bbox_xywh_px` clipped to the image rectangle [0, width] x [0, height] (a box wholly
    outside becomes an empty box on the border)."""
    x, y, w, h = (float(v) for v in bbox_xywh_px)
    x0, x1 = min(max(x, 0.0), width), min(max(x + w, 0.0), width)
    y0, y1 = min(max(y, 0.0), height), min(max(y + h, 0.0), height)
    return (x0, y0, x1 - x0, y1 - y0)


def fit_instance(
    rle: Rle, bbox_xywh_px: BoxXywh, area: float, *, height: int, width: int
) -> FittedInstance:
    """A stored instance made to fit its (height, width) image.

    An image-sized RLE is passed through unchanged (no decoding); another size is decoded,
    cropped or padded with `fit_mask`, re-encoded, and its area recounted. The box is clipped
    with `clip_box` either way.
    """
    box = clip_box(bbox_xywh_px, height=height, width=width)
    box_changed = box != tuple(float(v) for v in bbox_xywh_px)
    fitted = fit_rle(rle, height=height, width=width)
    if fitted is rle:
        return FittedInstance(rle=rle, bbox_xywh_px=box, area=float(area), changed=box_changed)
    area_px = float(rle_areas([fitted])[0])
    return FittedInstance(rle=fitted, bbox_xywh_px=box, area=area_px, changed=True)
