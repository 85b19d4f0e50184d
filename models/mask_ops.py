"""Building blocks of automatic mask generation: point grids, crops, scores, mask math.

Box IoU and NMS live in `autolabel.models.box_ops`.

Pure torch / numpy (plus scikit-image for connected components). Masks stay arrays here: the
one COCO RLE codec is `autolabel.storage.rle`, applied by callers outside `models`.
Frames: "image" means pixels of the full original image, "crop" means pixels of one crop
box, both with x to the right and y down. Boxes are xyxy with exclusive right/bottom edges
(a mask covering columns 3..5 has x0=3, x1=6), so width = x1 - x0 as in COCO's bbox.
"""

import math
from itertools import product
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from skimage import measure

from autolabel.models.errors import InvalidInputError

CropBoxXYXY = tuple[int, int, int, int]


def build_point_grid(points_per_side: int) -> npt.NDArray[np.float64]:
    """Evenly spaced points in the unit square, cell centres of an n x n grid.

    Returns:
        (n * n, 2) float64 array of (x, y) in [0, 1], row-major (x varies fastest).
    """
    if points_per_side < 1:
        raise InvalidInputError(f"expected points_per_side >= 1, got {points_per_side}")
    offset = 1.0 / (2 * points_per_side)
    side = np.linspace(offset, 1.0 - offset, points_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_layer_point_grids(
    points_per_side: int, n_crop_layers: int, downscale_per_layer: int
) -> list[npt.NDArray[np.float64]]:
    """One unit-square grid per crop layer; layer i has points_per_side / downscale**i per side."""
    if downscale_per_layer < 1:
        raise InvalidInputError(f"expected downscale_per_layer >= 1, got {downscale_per_layer}")
    return [
        build_point_grid(max(1, points_per_side // downscale_per_layer**layer))
        for layer in range(n_crop_layers + 1)
    ]


def generate_crop_boxes(
    image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[CropBoxXYXY], list[int]]:
    """Crop boxes of every layer: layer 0 is the whole image, layer i a (2**i)^2 overlapping grid.

    Args:
        image_hw: (height, width) of the image in pixels.
        n_layers: number of crop layers beyond the whole image.
        overlap_ratio: overlap between neighbouring crops as a fraction of the short side,
            scaled by 2 / crops_per_side for each layer.

    Returns:
        Crop boxes as xyxy integer pixels in the image frame, and the layer index of each.
    """
    height, width = image_hw
    boxes: list[CropBoxXYXY] = [(0, 0, width, height)]
    layers = [0]
    short_side = min(height, width)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(xs, ys):
            boxes.append((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)))
            layers.append(layer)
    return boxes, layers


def stability_score(
    mask_logits: torch.Tensor, mask_threshold: float, offset: float
) -> torch.Tensor:
    """IoU between the masks thresholded at `threshold + offset` and `threshold - offset`.

    Args:
        mask_logits: (N, H, W) float mask logits.
        mask_threshold: the logit at which a pixel belongs to the mask.
        offset: the non-negative shift of the threshold.

    Returns:
        (N,) float32 scores in [0, 1]; 0 for masks whose loose version is empty.
    """
    # The tight mask is a subset of the loose one, so intersection = |tight|, union = |loose|.
    # count_nonzero is ~9x faster than a bool->int64 sum here.
    tight = torch.count_nonzero(mask_logits > mask_threshold + offset, dim=(-1, -2))
    loose = torch.count_nonzero(mask_logits > mask_threshold - offset, dim=(-1, -2))
    return torch.where(loose > 0, tight / loose.clamp(min=1), 0.0).float()


def masks_to_boxes_xyxy(masks_bool_nhw: torch.Tensor) -> torch.Tensor:
    """Tight boxes around boolean masks, exclusive right/bottom edges; all-zero for empty masks.

    Args:
        masks_bool_nhw: (N, H, W) bool masks.

    Returns:
        (N, 4) int64 boxes xyxy in the masks' pixel frame.
    """
    n, height, width = masks_bool_nhw.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks_bool_nhw.device)
    rows = masks_bool_nhw.any(dim=-1)
    cols = masks_bool_nhw.any(dim=-2)
    return torch.stack([*_span(cols, width), *_span(rows, height)], dim=-1)[:, [0, 2, 1, 3]]


def _span(occupied: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First index and one-past-last index of True along the last axis; (0, 0) when none."""
    index = torch.arange(length, device=occupied.device)
    start = torch.where(occupied, index, length).amin(dim=-1)
    stop = torch.where(occupied, index + 1, 0).amax(dim=-1)
    empty = ~occupied.any(dim=-1)
    return start.masked_fill(empty, 0), stop


def is_box_near_crop_edge(
    boxes_xyxy: torch.Tensor,
    crop_box: CropBoxXYXY,
    image_box: CropBoxXYXY,
    atol: float = 20.0,
) -> torch.Tensor:
    """Whether a box touches an edge of its crop that is not also an edge of the image.

    Args:
        boxes_xyxy: (N, 4) boxes in the crop frame.
        crop_box: the crop, xyxy in the image frame.
        image_box: the whole image, (0, 0, width, height).
        atol: distance in pixels that counts as touching.

    Returns:
        (N,) bool, True for masks cut by the crop border.
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes_xyxy.device)
    image = torch.as_tensor(image_box, dtype=torch.float32, device=boxes_xyxy.device)
    boxes = boxes_xyxy.float() + crop[[0, 1, 0, 1]]
    near_crop = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_masks(
    masks_bool_nhw: torch.Tensor, crop_box: CropBoxXYXY, image_hw: tuple[int, int]
) -> torch.Tensor:
    """Place (N, h, w) crop masks into (N, H, W) image-sized masks (zeros outside the crop)."""
    x0, y0, x1, y1 = crop_box
    height, width = image_hw
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return masks_bool_nhw
    pad = (x0, width - x1, y0, height - y1)
    return torch.nn.functional.pad(masks_bool_nhw, pad, value=False)


def remove_small_regions(
    mask_bool_hw: npt.NDArray[np.bool_], min_area: int, mode: Literal["holes", "islands"]
) -> tuple[npt.NDArray[np.bool_], bool]:
    """Fill holes or drop islands smaller than `min_area` pixels (8-connected components).

    Islands: when every island is small the largest one is kept. Holes: any background
    component smaller than `min_area` is filled, including one touching the border.

    Returns:
        The (H, W) bool mask and whether it changed.
    """
    fill_holes = mode == "holes"
    working = mask_bool_hw != fill_holes  # background for holes, foreground for islands
    labels, n_labels = measure.label(working, connectivity=2, return_num=True)  # type: ignore[no-untyped-call]
    if n_labels == 0:
        return mask_bool_hw, False
    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)[1:]
    small = np.flatnonzero(sizes < min_area) + 1
    if small.size == 0:
        return mask_bool_hw, False
    if fill_holes:
        return mask_bool_hw | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n_labels + 1), small)
    if keep.size == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


def pack_masks(masks_bool_nhw: torch.Tensor) -> npt.NDArray[np.uint8]:
    """Bit-pack (N, H, W) bool masks row-major into (N, ceil(H * W / 8)) uint8, 8x smaller.

    For holding many full-image candidate masks in memory; `unpack_masks` inverts it.
    """
    count, height, width = masks_bool_nhw.shape
    flat = masks_bool_nhw.cpu().numpy().reshape(count, height * width)
    return np.packbits(flat, axis=1)


def unpack_masks(packed: npt.NDArray[np.uint8], image_hw: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """(N, H, W) bool masks of `pack_masks` output for masks of size `image_hw` (h, w)."""
    height, width = image_hw
    bits = np.unpackbits(packed, axis=1, count=height * width)
    return bits.reshape(packed.shape[0], height, width).astype(np.bool_)
