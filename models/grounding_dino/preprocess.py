"""GroundingDINO image preprocessing: the original resize formula, normalization, shape buckets.

The original evaluates `RandomResize([800], max_size=1333)`, i.e. short side 800 unless that makes
the long side exceed 1333, computed as below. transformers' processor differs where the cap
applies (600x1700 -> 470x1333 instead of the original 470x1331), so the original formula is used.
Images are resized with PIL bilinear (as torchvision does on PIL images), then normalized with the
ImageNet mean and std: `to_pixel_values` on the host (numpy/PIL, one image), or
`to_pixel_values_batch` in torch on a device (a batch of one shape bucket, the same bits: the
resize repeats PIL's fixed-point arithmetic, see `autolabel.models.transforms.resize_like_pil`).
"""

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from autolabel.models.errors import InvalidInputError
from autolabel.models.transforms import float32_constant, resize_like_pil, stage_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_hw(image_hw: tuple[int, int], min_size: int, max_size: int) -> tuple[int, int]:
    """(height, width) the original GroundingDINO resizes an image of `image_hw` to."""
    height, width = image_hw
    size = min_size
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > max_size:
        size = round(max_size * short / long)
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def check_image(image: npt.NDArray[np.uint8]) -> None:
    """Raise InvalidInputError unless `image` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise InvalidInputError(f"expected a uint8 numpy image, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")


def to_pixel_values(image: npt.NDArray[np.uint8], size_hw: tuple[int, int]) -> torch.Tensor:
    """Resize one RGB image to `size_hw` and normalize it.

    Args:
        image: (H, W, 3) uint8 RGB.
        size_hw: (height, width) after resizing.

    Returns:
        (3, h, w) float32 normalized tensor.
    """
    check_image(image)
    pil = Image.fromarray(image)
    if (image.shape[0], image.shape[1]) != size_hw:
        pil = pil.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(pil, dtype=np.float32) / np.float32(255.0))
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
    return ((pixels - mean) / std).permute(2, 0, 1).contiguous()


def to_pixel_values_batch(
    images: Sequence[npt.NDArray[np.uint8]], size_hw: tuple[int, int], device: torch.device | str
) -> torch.Tensor:
    """`to_pixel_values` of a batch whose images all resize to `size_hw`, in torch on `device`.

    The images are copied to `device` in one transfer (from pinned memory, `non_blocking`, on
    CUDA), resized there (images of one original size together) and normalized; the result has
    the bits `torch.stack([to_pixel_values(im, size_hw) for im in images])` has.

    Args:
        images: B (H_i, W_i, 3) uint8 RGB arrays, e.g. one `shape_buckets` batch.
        size_hw: (height, width) every image is resized to (`resized_hw` of each).
        device: Where to compute and return the result.

    Returns:
        (B, 3, h, w) float32 normalized tensor on `device`.
    """
    if not images:
        raise InvalidInputError("expected at least one image, got none")
    for image in images:
        check_image(image)
    target = torch.device(device)
    staged = stage_images(images, target)
    out = torch.empty(len(images), 3, *size_hw, dtype=torch.float32, device=target)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[(int(image.shape[0]), int(image.shape[1]))].append(index)
    mean = float32_constant(IMAGENET_MEAN, target).view(1, 3, 1, 1)
    std = float32_constant(IMAGENET_STD, target).view(1, 3, 1, 1)
    for members in groups.values():
        resized = resize_like_pil(torch.stack([staged[i] for i in members]), size_hw)
        pixels = resized.permute(0, 3, 1, 2).float() / 255.0
        normalized = (pixels - mean) / std
        for row, index in enumerate(members):
            out[index] = normalized[row]
    return out


def shape_buckets(sizes_hw: Sequence[tuple[int, int]], max_batch_size: int) -> list[list[int]]:
    """Group image indices by resized shape, in batches of at most `max_batch_size`.

    The Swin backbone ignores padding masks, so only images of identical resized shape are
    batched; the result then equals running each image alone.
    """
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, size in enumerate(sizes_hw):
        groups[size].append(index)
    return [
        members[start : start + max_batch_size]
        for members in groups.values()
        for start in range(0, len(members), max_batch_size)
    ]
