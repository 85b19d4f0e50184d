"""Pre- and post-processing of EfficientViT-SAM, bit-compatible with the official implementation.

Frames used throughout:
- *original*: pixel coordinates of the caller's image, (H, W).
- *prompt frame*: the image resized so its long side is 1024 (`prompt_size`, (h', w')), for every
  variant; prompts (points xy, boxes xyxy) are expressed here before the prompt encoder.
- *encoder input*: the image resized so its long side is S (512 or 1024), normalised, and padded
  at the bottom/right to S x S.
"""

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from autolabel.models.efficientvit_sam.sam import LOW_RES_MASK_SIZE, PROMPT_FRAME_SIZE
from autolabel.models.errors import InvalidInputError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

# torchvision's Normalize on the [0, 1] scale: mean/255 and std/255 rounded to float32.
_MEAN_01 = torch.tensor([m / 255 for m in PIXEL_MEAN], dtype=torch.float32).view(3, 1, 1)
_STD_01 = torch.tensor([s / 255 for s in PIXEL_STD], dtype=torch.float32).view(3, 1, 1)


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) after scaling the long side to `long_side`, rounding as upstream (`int(x + 0.5)`)."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def validate_image(image: object) -> npt.NDArray[np.uint8]:
    """Check an image and return it as a C-contiguous (H, W, 3) uint8 RGB array.

    Grayscale (H, W) or (H, W, 1) images are converted to RGB by repeating the channel. RGBA and
    any other channel count are rejected (drop or composite the alpha channel first).

    Raises:
        InvalidInputError: Not a numpy array, not uint8, wrong rank/channels, or empty.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"expected a numpy uint8 (H, W, 3) RGB image, got {type(image)}")
    if image.dtype != np.uint8:
        raise InvalidInputError(
            f"expected a uint8 (H, W, 3) RGB image, got dtype {image.dtype}; "
            "convert with np.clip(x, 0, 255).astype(np.uint8) if values are 0-255"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        hint = " (RGBA: drop the alpha channel first)" if image.ndim == 3 else ""
        raise InvalidInputError(f"expected an (H, W, 3) RGB image, got shape {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInputError(f"expected a non-empty image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def resize_longest_side(image: npt.NDArray[np.uint8], long_side: int) -> npt.NDArray[np.uint8]:
    """PIL bilinear (antialiased) resize of an (H, W, 3) uint8 image to long side `long_side`.

    Returns the input unchanged when its long side already equals `long_side`.
    """
    height, width = image.shape[:2]
    if max(height, width) == long_side:
        return image
    new_h, new_w = preprocess_shape(height, width, long_side)
    resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def preprocess_image(image: npt.NDArray[np.uint8], encoder_input_size: int) -> Tensor:
    """Make the encoder input of one validated RGB image.

    Args:
        image: (H, W, 3) uint8 RGB, see `validate_image`.
        encoder_input_size: S (512 or 1024).

    Returns:
        (3, S, S) float32 CPU tensor: resized, `(x / 255 - mean / 255) / (std / 255)`, zero
        padded at the bottom and right.
    """
    resized = resize_longest_side(image, encoder_input_size)
    x = torch.tensor(resized).permute(2, 0, 1).float().div(255)  # copies: input may be read-only
    x = (x - _MEAN_01) / _STD_01
    h, w = x.shape[-2:]
    return F.pad(x, (0, encoder_input_size - w, 0, encoder_input_size - h), value=0.0)


class PromptTransform:
    """Map prompts from an original image frame (H, W) to the 1024 prompt frame (h', w').

    The interface of segment-anything's `ResizeLongestSide` (every method takes the image's
    `original_size`), with the official EfficientViT-SAM arithmetic: x scales by w'/W and y by
    h'/H. Numpy inputs are computed in float64 (cast to float32 when building tensors); torch
    inputs in float32. Stateless, so one instance can be shared by threads.

    Args:
        target_length: Long side of the prompt frame (1024 for every variant).
    """

    def __init__(self, target_length: int = PROMPT_FRAME_SIZE) -> None:
        self.target_length = target_length

    def prompt_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(h', w') of an image of `original_size` (H, W) in the prompt frame."""
        return preprocess_shape(original_size[0], original_size[1], self.target_length)

    def _scales(self, original_size: tuple[int, int]) -> tuple[float, float]:
        new_h, new_w = self.prompt_size(original_size)
        return new_w / original_size[1], new_h / original_size[0]

    def apply_coords(
        self, coords: npt.ArrayLike, original_size: tuple[int, int]
    ) -> npt.NDArray[np.float64]:
        """(..., 2) xy points, original frame -> float64 prompt frame (a new array)."""
        out = np.array(coords, dtype=np.float64, copy=True)
        sx, sy = self._scales(original_size)
        out[..., 0] *= sx
        out[..., 1] *= sy
        return out

    def apply_boxes(
        self, boxes: npt.ArrayLike, original_size: tuple[int, int]
    ) -> npt.NDArray[np.float64]:
        """(N, 4) or (4,) xyxy boxes, original frame -> (N, 4) float64 prompt frame."""
        pairs = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
        return self.apply_coords(pairs, original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: Tensor, original_size: tuple[int, int]) -> Tensor:
        """(..., 2) xy points tensor, original frame -> float32 prompt frame (a new tensor)."""
        out = coords.detach().clone().to(torch.float32)
        sx, sy = self._scales(original_size)
        out[..., 0] = out[..., 0] * sx
        out[..., 1] = out[..., 1] * sy
        return out

    def apply_boxes_torch(self, boxes: Tensor, original_size: tuple[int, int]) -> Tensor:
        """(N, 4) xyxy boxes tensor, original frame -> (N, 4) float32 prompt frame."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)


def postprocess_masks(
    low_res_logits: Tensor, prompt_size: tuple[int, int], original_size: tuple[int, int]
) -> Tensor:
    """Upscale decoder logits to the original image.

    Args:
        low_res_logits: (B, C, 256, 256) mask logits.
        prompt_size: (h', w'), the image size in the 1024 prompt frame.
        original_size: (H, W) of the original image.

    Returns:
        (B, C, H, W) float logits: bilinear to 1024 x 1024, crop to (h', w'), bilinear to (H, W)
        (align_corners=False). Threshold at 0.0 for binary masks.
    """
    if low_res_logits.shape[-2:] != (LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE):
        raise InvalidInputError(
            f"expected (B, C, 256, 256) logits, got {tuple(low_res_logits.shape)}"
        )
    size = (PROMPT_FRAME_SIZE, PROMPT_FRAME_SIZE)
    masks = F.interpolate(low_res_logits, size, mode="bilinear", align_corners=False)
    masks = masks[..., : prompt_size[0], : prompt_size[1]]
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
