"""COCO run-length encoding of binary masks, and mask <-> polygon conversion.

RLEs are column-major (Fortran order), as in COCO and pycocotools: `counts` alternates runs of
0s and 1s starting with 0s, compressed to an ASCII string. Encoding and area use pycocotools' C
code; decoding is done here because `pycocotools.mask.decode` emits a DeprecationWarning under
numpy 2. pycocotools 2.0.11 with numpy 2.4 raises OverflowError in `mask.area` for lists of more
than 255 RLEs (the count is stored in a uint8 somewhere on the way), so area and bbox are computed
in chunks of at most 255.
"""

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask
from skimage import measure

from autolabel.storage.errors import FormatError

_PYCOCO_CHUNK = 255


class Rle(TypedDict):
    """Compressed COCO RLE: `size` is [height, width] in pixels, `counts` an ASCII string."""

    size: list[int]
    counts: str


def encode_masks(masks_hwn: npt.NDArray[np.uint8] | npt.NDArray[np.bool_]) -> list[Rle]:
    """Encode a stack of masks.

    Args:
        masks_hwn: (H, W, N) uint8 {0, 1} or bool masks; Fortran order avoids a copy.

    Returns:
        N compressed RLEs with str counts.
    """
    if masks_hwn.ndim != 3:
        raise ValueError(f"expected (H, W, N) masks, got shape {masks_hwn.shape}")
    if masks_hwn.shape[2] == 0:
        return []
    fortran = np.asfortranarray(masks_hwn, dtype=np.uint8)
    return [
        Rle(size=[int(s) for s in r["size"]], counts=r["counts"].decode("ascii"))
        for r in coco_mask.encode(fortran)
    ]


def encode_mask(mask_hw: npt.NDArray[np.bool_] | npt.NDArray[np.uint8]) -> Rle:
    """Encode one (H, W) bool or {0, 1} mask, pixel frame, origin top-left."""
    if mask_hw.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask_hw.shape}")
    return encode_masks(mask_hw[:, :, None])[0]


def counts_to_runs(counts: str) -> list[int]:
    """Run lengths of a compressed COCO counts string (LEB128-like, 5 bits per char, deltas)."""
    runs: list[int] = []
    pos, n = 0, len(counts)
    while pos < n:
        value, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise FormatError(f"expected a complete RLE counts string, got {counts[:40]!r}...")
            c = ord(counts[pos]) - 48
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def decode_rle(rle: Rle) -> npt.NDArray[np.bool_]:
    """Decode one compressed RLE to an (H, W) bool mask (C-contiguous).

    Raises:
        FormatError: The runs are negative or do not add up to H * W.
    """
    height, width = (int(s) for s in rle["size"])
    runs = counts_to_runs(rle["counts"])
    if min(runs, default=0) < 0 or sum(runs) != height * width:
        raise FormatError(
            f"expected non-negative RLE runs summing to {height}*{width}={height * width}, "
            f"got sum {sum(runs)}"
        )
    values = np.arange(len(runs)) % 2 == 1
    column_major = np.repeat(values, runs)
    return np.ascontiguousarray(column_major.reshape(width, height).T)


def _pyco(rles: Sequence[Rle]) -> list[dict[str, Any]]:
    return [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]


def rle_areas(rles: Sequence[Rle]) -> npt.NDArray[np.int64]:
    """(N,) int64 foreground pixel counts (chunked around the pycocotools uint8 overflow)."""
    out = np.zeros(len(rles), dtype=np.int64)
    for start in range(0, len(rles), _PYCOCO_CHUNK):
        chunk = _pyco(rles[start : start + _PYCOCO_CHUNK])
        out[start : start + len(chunk)] = coco_mask.area(chunk)
    return out


def rle_bboxes(rles: Sequence[Rle]) -> npt.NDArray[np.float64]:
    """(N, 4) float64 tight boxes (x, y, width, height) in pixels; all zeros for empty masks."""
    out = np.zeros((len(rles), 4), dtype=np.float64)
    for start in range(0, len(rles), _PYCOCO_CHUNK):
        chunk = _pyco(rles[start : start + _PYCOCO_CHUNK])
        out[start : start + len(chunk)] = coco_mask.toBbox(chunk)
    return out


def rle_ious(rles_a: Sequence[Rle], rles_b: Sequence[Rle]) -> npt.NDArray[np.float64]:
    """(N, M) float64 mask IoU of every RLE of `rles_a` with every RLE of `rles_b`, all of one
    size, on the compressed runs (pycocotools; no decoding); 0.0 where both masks are empty.

    Raises:
        ValueError: The sizes differ.
    """
    sizes = {(int(r["size"][0]), int(r["size"][1])) for r in (*rles_a, *rles_b)}
    if len(sizes) > 1:
        raise ValueError(f"expected masks of one size, got sizes {sorted(sizes)}")
    if not rles_a or not rles_b:
        return np.zeros((len(rles_a), len(rles_b)), dtype=np.float64)
    ious = coco_mask.iou(_pyco(rles_a), _pyco(rles_b), [0] * len(rles_b))
    return np.asarray(ious, dtype=np.float64).reshape(len(rles_a), len(rles_b))


def rle_iou(a: Rle, b: Rle) -> float:
    """Mask IoU of two RLEs of the same size (0.0 when both are empty).

    Raises:
        ValueError: The sizes differ.
    """
    return float(rle_ious([a], [b])[0, 0])


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> Rle:
    """Rasterize COCO polygons ([x0, y0, x1, y1, ...] in pixels) into one merged RLE.

    Raises:
        FormatError: A polygon has fewer than 3 points or an odd number of coordinates.
    """
    for poly in polygons:
        if len(poly) < 6 or len(poly) % 2:
            raise FormatError(f"expected polygons of >= 3 (x, y) points, got {len(poly)} values")
    if not polygons:
        return encode_mask(np.zeros((height, width), dtype=np.uint8))
    parts = coco_mask.frPyObjects([[float(v) for v in p] for p in polygons], height, width)
    merged = coco_mask.merge(parts)
    return Rle(size=[height, width], counts=merged["counts"].decode("ascii"))


def uncompressed_to_rle(counts: Sequence[int], height: int, width: int) -> Rle:
    """Compress an uncompressed COCO RLE (`counts` as a list of run lengths)."""
    if sum(int(c) for c in counts) != height * width:
        raise FormatError(f"expected RLE runs summing to {height * width}, got {sum(counts)}")
    rle = coco_mask.frPyObjects({"size": [height, width], "counts": list(counts)}, height, width)
    return Rle(size=[height, width], counts=rle["counts"].decode("ascii"))


def _signed_area(xy: npt.NDArray[np.float64]) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def mask_to_polygons(
    mask_hw: npt.NDArray[np.bool_], *, tolerance_px: float = 0.5
) -> list[list[float]]:
    """Outer boundaries of a mask as COCO polygons.

    Contours are traced at the 0.5 level (skimage `find_contours` on a padded mask) and shifted
    to COCO's frame, where pixel (row i, col j) covers [j, j + 1] x [i, i + 1]. They are then
    simplified with Douglas-Peucker at `tolerance_px` (unless that leaves fewer than 3 points).
    COCO polygons cannot express holes (pycocotools unions them), so hole contours are dropped:
    holes are filled in polygon output. A contour with fewer than 3 distinct points is dropped, so
    an empty mask gives an empty list; use `polygons_or_rle` to fall back to RLE.

    Args:
        mask_hw: (H, W) bool mask, origin top-left.
        tolerance_px: Simplification tolerance in pixels (0 keeps every contour vertex).

    Returns:
        Polygons as flat [x0, y0, x1, y1, ...] float lists in pixels.
    """
    padded = np.pad(mask_hw.astype(np.float32), 1)
    polygons: list[list[float]] = []
    for contour in measure.find_contours(padded, 0.5):  # type: ignore[no-untyped-call]
        # (row, col) in the padded array -> COCO (x, y)
        xy = _closed_to_open(np.flip(contour, axis=1) - 0.5)
        if len(xy) < 3 or _signed_area(xy) <= 0:  # degenerate, or a hole (clockwise in x-y)
            continue
        if tolerance_px > 0:
            simple = _closed_to_open(
                measure.approximate_polygon(xy, tolerance_px)  # type: ignore[no-untyped-call]
            )
            xy = simple if len(simple) >= 3 else xy
        xy = np.clip(xy, 0.0, [mask_hw.shape[1], mask_hw.shape[0]])
        polygons.append([round(float(v), 2) for v in xy.ravel()])
    return polygons


def _closed_to_open(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
        return xy[:-1]
    return xy


def polygons_or_rle(
    mask_hw: npt.NDArray[np.bool_], *, min_iou: float = 0.5
) -> list[list[float]] | Rle:
    """COCO polygons for a mask, or its RLE when polygons cannot represent it.

    Falls back to RLE when `mask_to_polygons` finds no polygon of >= 3 points, or when the
    polygons rasterize (as pycocotools does) to an IoU below `min_iou` with the mask: tiny masks
    (a single pixel gives a diamond that covers no pixel center) and thin lines.

    Args:
        mask_hw: (H, W) bool mask, origin top-left.
        min_iou: Lowest acceptable IoU between the rasterized polygons and the mask.
    """
    rle = encode_mask(mask_hw)
    polygons = mask_to_polygons(mask_hw)
    if not polygons:
        return rle
    height, width = mask_hw.shape
    raster = polygons_to_rle(polygons, height, width)
    pyco = _pyco([rle, raster])
    union = float(coco_mask.area(coco_mask.merge(pyco, intersect=False)))
    inter = float(coco_mask.area(coco_mask.merge(pyco, intersect=True)))
    return polygons if union > 0 and inter / union >= min_iou else rle
