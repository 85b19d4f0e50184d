"""Pre- and post-processing of EfficientViT-SAM, bit-compatible with the official implementation.

Frames used throughout:
- *original*: pixel coordinates of the caller's image, (H, W).
- *prompt frame*: the image resized so its long side is 1024 (`prompt_size`, (h', w')), for every
  variant; prompts (points xy, boxes xyxy) are expressed here before the prompt encoder.
- *encoder input*: the image resized so its long side is S (512 or 1024), normalised, and padded
  at the bottom/right to S x S.

Two implementations of the encoder-input preprocessing give the same bits: `preprocess_image`
(numpy and PIL on the host, one image) and `preprocess_images_torch` (torch on the images' device,
a batch). The torch resize, `resize_like_pil`, repeats PIL's fixed-point bilinear resampling in
int32, so it is exact on every device; `stage_images` copies images to a device in one transfer.
"""

from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import PIL
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from autolabel.models.efficientvit_sam.sam import LOW_RES_MASK_SIZE, PROMPT_FRAME_SIZE
from autolabel.models.errors import InvalidInputError

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

_PIL_VERSION = tuple(int(part) for part in PIL.__version__.split(".")[:2])
#: Pillow's fixed-point precision for 8-bit images (Resample.c: PRECISION_BITS = 32 - 8 - 2).
_PIL_PRECISION_BITS = 22

# torchvision's Normalize on the [0, 1] scale: mean/255 and std/255 rounded to float32.
_MEAN_01_VALUES = tuple(m / 255 for m in PIXEL_MEAN)
_STD_01_VALUES = tuple(s / 255 for s in PIXEL_STD)
_MEAN_01 = torch.tensor(_MEAN_01_VALUES, dtype=torch.float32).view(3, 1, 1)
_STD_01 = torch.tensor(_STD_01_VALUES, dtype=torch.float32).view(3, 1, 1)


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


@lru_cache(maxsize=32)
def _host_constant(values: tuple[float, ...], pinned: bool) -> Tensor:
    constant = torch.tensor(values, dtype=torch.float32)
    return constant.pin_memory() if pinned else constant


def float32_constant(values: tuple[float, ...], device: torch.device) -> Tensor:
    """(len(values),) float32 tensor of `values` on `device`; on CUDA copied without blocking
    from a cached pinned host tensor (a pageable copy could synchronise the stream)."""
    return _host_constant(values, device.type == "cuda").to(device, non_blocking=True)


@lru_cache(maxsize=256)
def _pil_bilinear_taps(in_size: int, out_size: int, pinned: bool) -> tuple[Tensor, Tensor]:
    """Pillow's bilinear taps for one axis (Resample.c `precompute_coeffs` and
    `normalize_coeffs_8bpc`, in the same float64 operation order).

    Returns:
        index (k, out) int64 input positions and weight (k, out) int32 fixed-point weights
        (2**22 = 1.0), tap-major so each tap's row is contiguous, in pinned memory if `pinned`;
        taps past an output's support have weight 0 and a valid index.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 1.0 * filter_scale  # the bilinear (triangle) filter has support 1
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - xmin
    taps = np.arange(ksize, dtype=np.int64)
    x = (taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * (1.0 / filter_scale)
    weight = np.where(taps[None, :] < xmax[:, None], np.maximum(1.0 - np.abs(x), 0.0), 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for tap in range(ksize):  # sequential sum, as the C loop adds them
        total += weight[:, tap]
    weight = weight / np.where(total != 0.0, total, 1.0)[:, None]
    fixed = np.trunc(0.5 + weight * (1 << _PIL_PRECISION_BITS)).astype(np.int32)
    index = torch.from_numpy(np.minimum(taps[:, None] + xmin[None, :], in_size - 1))
    weight_t = torch.from_numpy(np.ascontiguousarray(fixed.T))
    return (index.pin_memory(), weight_t.pin_memory()) if pinned else (index, weight_t)


def _resample_axis(x: Tensor, dim: int, out_size: int) -> Tensor:
    """One Pillow bilinear pass along `dim` of a uint8 tensor, accumulated in int32 and rounded
    and clipped to uint8 as Pillow's `clip8` (the input is read in uint8, never widened whole)."""
    index, weight = _pil_bilinear_taps(x.shape[dim], out_size, x.device.type == "cuda")
    index = index.to(x.device, non_blocking=True)
    weight = weight.to(x.device, non_blocking=True)
    trailing = (1,) * (x.dim() - 1 - (dim % x.dim()))
    shape = list(x.shape)
    shape[dim] = out_size
    acc = torch.full(shape, 1 << (_PIL_PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    for tap in range(index.shape[0]):
        gathered = x.index_select(dim, index[tap]).to(torch.int32)
        acc += gathered.mul_(weight[tap].view(-1, *trailing))
    return acc.bitwise_right_shift_(_PIL_PRECISION_BITS).clamp_(0, 255).to(torch.uint8)


def pil_resizes_vertically_first(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Whether the installed Pillow runs the vertical pass first when both axes change.

    Pillow >= 13.0 does when the height shrinks by more than twice the width's shrink
    (Resample.c `horizontal_first`); 12.2-12.3 only for images over 100 times taller than wide
    whose height shrinks; older versions always run the horizontal pass first.
    """
    (height, width), (new_h, new_w) = in_hw, out_hw
    if _PIL_VERSION >= (13, 0):
        return height - new_h > 0 and height - new_h > (width - new_w) * 2
    if _PIL_VERSION >= (12, 2):
        return height > width * 100 and new_h < height
    return False


def resize_like_pil(images_nhwc: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Pillow's `Image.resize((w, h), BILINEAR)` of uint8 RGB images, in torch on their device.

    Bit-exact with PIL (antialiased when downscaling): the same taps and 22-bit fixed-point
    weights, the passes in PIL's order (`pil_resizes_vertically_first`), each rounded and clipped
    to 0-255 as PIL does. A pass whose axis keeps its size is skipped, as in PIL.

    Args:
        images_nhwc: (N, H, W, C) uint8 images, on any device.
        size_hw: (h, w) after resizing.

    Returns:
        (N, h, w, C) uint8 images on the same device.
    """
    height, width = images_nhwc.shape[1:3]
    if (height, width) == tuple(size_hw):
        return images_nhwc
    x = images_nhwc
    passes = [(2, size_hw[1], width), (1, size_hw[0], height)]  # (dim, new, old): x then y
    if pil_resizes_vertically_first((height, width), size_hw):
        passes.reverse()
    for dim, new_size, old_size in passes:
        if new_size != old_size:
            x = _resample_axis(x, dim, new_size)
    return x


def stage_images(images: Sequence[npt.NDArray[np.uint8]], device: torch.device) -> list[Tensor]:
    """Copy (H_i, W_i, C) uint8 images to `device` in one transfer on the current stream.

    On CUDA the host buffer is pinned and the copy is `non_blocking`: the call returns before
    the copy ends, and work on the current stream sees the copied images.

    Returns:
        One (H_i, W_i, C) uint8 tensor per image, views of one buffer on `device`.
    """
    sizes = [int(image.size) for image in images]
    pin = torch.device(device).type == "cuda"
    host = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=pin)
    flat = host.numpy()
    offsets = [0, *np.cumsum(sizes).tolist()]
    for image, start, end in zip(images, offsets[:-1], offsets[1:], strict=True):
        np.copyto(flat[start:end], image.reshape(-1))  # also reads read-only arrays
    staged = host.to(device, non_blocking=pin)
    return [
        staged[start:end].view(image.shape)
        for image, start, end in zip(images, offsets[:-1], offsets[1:], strict=True)
    ]


def preprocess_images_torch(images_hwc: Sequence[Tensor], encoder_input_size: int) -> Tensor:
    """`preprocess_image` for a batch, in torch on the images' device, with the same bits.

    Images of one size are resized together (`resize_like_pil`), then converted and normalised
    with the float32 operations of `preprocess_image`, and written into a zero-padded batch.

    Args:
        images_hwc: B (H_i, W_i, 3) uint8 RGB tensors on one device, e.g. from `stage_images`.
        encoder_input_size: S (512 or 1024).

    Returns:
        (B, 3, S, S) float32 tensor on the images' device.
    """
    if not images_hwc:
        raise InvalidInputError("expected at least one image, got none")
    device = images_hwc[0].device
    size = encoder_input_size
    out = torch.zeros(len(images_hwc), 3, size, size, dtype=torch.float32, device=device)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, image in enumerate(images_hwc):
        groups[(int(image.shape[0]), int(image.shape[1]))].append(index)
    mean = float32_constant(_MEAN_01_VALUES, device).view(1, 3, 1, 1)
    std = float32_constant(_STD_01_VALUES, device).view(1, 3, 1, 1)
    for (height, width), members in groups.items():
        new_h, new_w = (height, width)
        if max(height, width) != size:
            new_h, new_w = preprocess_shape(height, width, size)
        batch = resize_like_pil(torch.stack([images_hwc[i] for i in members]), (new_h, new_w))
        x = (batch.permute(0, 3, 1, 2).float().div(255) - mean) / std
        for row, index in enumerate(members):
            out[index, :, :new_h, :new_w] = x[row]
    return out


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
