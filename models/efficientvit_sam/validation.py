"""Validation of prompts given in the original image frame; errors say expected vs received.

Rules (also documented on `SamPredictor.predict` and `segment_boxes_batch`):
- Coordinates must be finite (NaN or inf raise `InvalidInputError`).
- Boxes are xyxy pixels. A box with x1 < x0 or y1 < y0 (inverted) raises `InvalidInputError`;
  boxes are never silently swapped. A box that sticks out of the image is clipped to
  [0, W] x [0, H]; a box that lies entirely outside (empty after clipping) raises.
- Points may lie outside the image (SAM accepts them); labels must be integers with one label per
  point (1 foreground, 0 background, -1 padding).
"""

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from autolabel.models.errors import InvalidInputError


def _as_float_array(value: object, what: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"expected numeric {what}, got {type(value).__name__}") from exc
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"expected finite {what}, got NaN or inf in {array.tolist()}")
    return array


def check_boxes(boxes: object, original_size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Validate and clip xyxy pixel boxes.

    Args:
        boxes: (N, 4) or (4,) array-like of x0, y0, x1, y1 in the original frame.
        original_size: (H, W) of the image.

    Returns:
        (N, 4) float64 boxes clipped to the image; N may be 0 for an empty (0, 4) input.

    Raises:
        InvalidInputError: wrong shape, non-finite, inverted, or entirely outside the image.
    """
    array = _as_float_array(boxes, "xyxy boxes")
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 4:
        raise InvalidInputError(f"expected (N, 4) xyxy boxes, got shape {array.shape}")
    inverted = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
    if np.any(inverted):
        i = int(np.flatnonzero(inverted)[0])
        raise InvalidInputError(
            f"expected x0 <= x1 and y0 <= y1 in xyxy boxes, got box {i} = {array[i].tolist()}"
        )
    height, width = original_size
    clipped = array.copy()
    clipped[:, 0::2] = np.clip(array[:, 0::2], 0.0, float(width))
    clipped[:, 1::2] = np.clip(array[:, 1::2], 0.0, float(height))
    outside = (
        (array[:, 0] >= width) | (array[:, 1] >= height) | (array[:, 2] <= 0) | (array[:, 3] <= 0)
    )
    if np.any(outside):
        i = int(np.flatnonzero(outside)[0])
        raise InvalidInputError(
            f"expected boxes overlapping the {width}x{height} image, got box {i} = "
            f"{array[i].tolist()} entirely outside it"
        )
    return clipped


def check_points(
    point_coords: object, point_labels: object
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Validate (N, 2) xy points and their (N,) labels.

    Returns:
        float64 (N, 2) coordinates and int64 (N,) labels.

    Raises:
        InvalidInputError: missing labels, wrong shapes, non-finite or non-integer values.
    """
    if point_labels is None:
        raise InvalidInputError("expected point_labels with point_coords, got None")
    coords = _as_float_array(point_coords, "point coordinates")
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] == 0:
        raise InvalidInputError(f"expected (N, 2) xy points with N >= 1, got {coords.shape}")
    labels_f = _as_float_array(point_labels, "point labels")
    if labels_f.shape != (coords.shape[0],):
        raise InvalidInputError(
            f"expected ({coords.shape[0]},) point labels, got shape {labels_f.shape}"
        )
    if not np.all(np.isin(labels_f, (-1.0, 0.0, 1.0))):
        raise InvalidInputError(f"expected labels in {{-1, 0, 1}}, got {labels_f.tolist()}")
    return coords, labels_f.astype(np.int64)


def _shape_error(name: str, expected: str, value: Tensor) -> InvalidInputError:
    return InvalidInputError(f"expected {name} of shape {expected}, got {tuple(value.shape)}")


def _point_batch(point_coords: Tensor, point_labels: Tensor | None) -> int:
    if point_labels is None:
        raise InvalidInputError("expected point_labels with point_coords, got None")
    if point_coords.dim() != 3 or point_coords.shape[-1] != 2:
        raise _shape_error("point_coords", "(B, N, 2)", point_coords)
    if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
        raise _shape_error("point_labels", str(tuple(point_coords.shape[:2])), point_labels)
    return int(point_coords.shape[0])


def check_torch_prompts(
    point_coords: Tensor | None,
    point_labels: Tensor | None,
    boxes: Tensor | None,
    mask_input: Tensor | None,
) -> None:
    """Validate batched prompt tensors already in the 1024 prompt frame (`predict_torch`).

    Expected: point_coords (B, N, 2) with point_labels (B, N); boxes (B, 4) with B >= 1;
    mask_input (B, 1, 256, 256); all finite and with the same B.

    Raises:
        InvalidInputError: a malformed prompt, with the expected and received shapes.
    """
    batch: dict[str, int] = {}
    if point_coords is not None:
        batch["point_coords"] = _point_batch(point_coords, point_labels)
    if boxes is not None:
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or boxes.shape[0] == 0:
            raise _shape_error("boxes", "(B, 4) with B >= 1", boxes)
        batch["boxes"] = int(boxes.shape[0])
    if mask_input is not None:
        if mask_input.dim() != 4 or tuple(mask_input.shape[1:]) != (1, 256, 256):
            raise _shape_error("mask_input", "(B, 1, 256, 256)", mask_input)
        batch["mask_input"] = int(mask_input.shape[0])
    named = {"point_coords": point_coords, "boxes": boxes, "mask_input": mask_input}
    for name, value in named.items():
        if value is not None and not bool(torch.isfinite(value).all()):
            raise InvalidInputError(f"expected finite {name}, got NaN or inf")
    if len(set(batch.values())) > 1:
        raise InvalidInputError(f"expected one batch size B for all prompts, got {batch}")
