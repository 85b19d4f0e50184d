"""Training-time image and mask preparation: resize longest side, flip, pad (paper, sec. 3.2).

The image goes through the same arithmetic as inference (`autolabel.models.transforms`): PIL
bilinear resize of the long side to S, normalisation, zero padding at the bottom and right.
Masks are resized bilinearly as floats and thresholded at 0.5, so they stay aligned with the
image; a horizontal flip is applied before padding, so padding stays at the right.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from autolabel.models.errors import InvalidInputError
from autolabel.models.transforms import (
    preprocess_image,
    preprocess_shape,
    resize_longest_side,
    validate_image,
)


@dataclass(frozen=True, slots=True)
class TrainSample:
    """One image ready for the model, with its ground-truth masks.

    Attributes:
        image: (3, S, S) float32 normalised, padded encoder input.
        masks: (M, S, S) bool masks in the same padded frame, none empty.
        image_id: Id of the source image (for logging and the teacher cache).
        flipped: Whether the image was mirrored (teacher embeddings are cached per flip).
        teacher_image: (3, 1024, 1024) float32 SAM-preprocessed copy for the distillation
            teacher, or None outside distillation.
    """

    image: Tensor
    masks: Tensor
    image_id: int
    flipped: bool = False
    teacher_image: Tensor | None = None


def choose_masks(count: int, max_masks: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Indices of up to `max_masks` of `count` masks, drawn without replacement, sorted."""
    if count <= max_masks:
        return np.arange(count, dtype=np.int64)
    return np.sort(rng.choice(count, size=max_masks, replace=False)).astype(np.int64)


def resize_masks(masks_bool_mhw: npt.NDArray[np.bool_], long_side: int) -> Tensor:
    """(M, H, W) bool masks -> (M, h, w) bool, long side `long_side` (bilinear, >= 0.5)."""
    m, height, width = masks_bool_mhw.shape
    new_h, new_w = preprocess_shape(height, width, long_side)
    x = torch.from_numpy(np.ascontiguousarray(masks_bool_mhw)).float()[:, None]
    if (new_h, new_w) != (height, width) and m > 0:
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    return x[:, 0] >= 0.5


def prepare_sample(
    image: npt.NDArray[np.uint8],
    masks_bool_mhw: npt.NDArray[np.bool_],
    *,
    input_size: int,
    flip: bool,
    image_id: int = 0,
    teacher_input_size: int | None = None,
) -> TrainSample:
    """Resize, optionally flip, normalise and pad one image with its masks.

    Args:
        image: (H, W, 3) uint8 RGB in the original frame.
        masks_bool_mhw: (M, H, W) bool masks in the original frame.
        input_size: S, the encoder input side (512 for L models, 1024 for XL).
        flip: Mirror image and masks left-right.
        image_id: Carried through to `TrainSample.image_id`.
        teacher_input_size: Also make the teacher's input at this size (1024) when given.

    Returns:
        The sample; masks that vanish after resizing are dropped.

    Raises:
        InvalidInputError: image/mask shapes disagree or the image is not uint8 RGB.
    """
    image = validate_image(image)
    if masks_bool_mhw.ndim != 3 or masks_bool_mhw.shape[1:] != image.shape[:2]:
        raise InvalidInputError(
            f"expected (M, {image.shape[0]}, {image.shape[1]}) masks, got {masks_bool_mhw.shape}"
        )
    resized = resize_longest_side(image, input_size)
    masks = resize_masks(masks_bool_mhw, input_size)
    if flip:
        resized = np.ascontiguousarray(resized[:, ::-1])
        masks = masks.flip(-1)
    pixels = preprocess_image(resized, input_size)
    h, w = masks.shape[-2:]
    padded = F.pad(masks, (0, input_size - w, 0, input_size - h), value=False)
    keep = padded.flatten(1).any(1)
    teacher = None
    if teacher_input_size is not None:
        teacher = preprocess_image(
            np.ascontiguousarray(image[:, ::-1]) if flip else image, teacher_input_size
        )
    return TrainSample(
        image=pixels, masks=padded[keep], image_id=image_id, flipped=flip, teacher_image=teacher
    )
