"""Value types returned by the EfficientViT-SAM inference API."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from torch import Tensor


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageEmbedding:
    """One encoded image: everything the prompt decoder needs, immutable and thread-safe.

    Attributes:
        embedding: (1, 256, 64, 64) float32 image embedding on the model's device (its own
            memory; treat it as read-only).
        original_size: (H, W) of the original image in pixels.
        prompt_size: (h', w'), the image size in the 1024 prompt frame.
    """

    embedding: Tensor
    original_size: tuple[int, int]
    prompt_size: tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskSet:
    """Masks of N box prompts on one image, on the CPU, ready for RLE encoding.

    `masks_fortran` and `masks` share one buffer: `masks_fortran` is the (H, W, N) uint8
    column-major (Fortran-ordered) array that `pycocotools.mask.encode` takes without copying,
    and `masks` is an (N, H, W) bool view of the same memory (not C-contiguous; call
    `np.ascontiguousarray` if a dense copy is needed).

    Attributes:
        masks: (N, H, W) bool masks at the original image resolution.
        masks_fortran: (H, W, N) uint8 {0, 1}, Fortran-ordered; `masks_fortran[:, :, i]` is
            mask i.
        low_res_logits: (N, 256, 256) float32 decoder logits (the 1024-frame square at 1/4
            resolution); usable as the next `mask_input`.
        iou_predictions: (N,) float32 predicted mask IoU.
        boxes_xyxy_px: (N, 4) float64 boxes actually used, original pixel frame (after clipping).
    """

    masks: npt.NDArray[np.bool_]
    masks_fortran: npt.NDArray[np.uint8]
    low_res_logits: npt.NDArray[np.float32]
    iou_predictions: npt.NDArray[np.float32]
    boxes_xyxy_px: npt.NDArray[np.float64]

    def __len__(self) -> int:
        """Number of masks N."""
        return int(self.iou_predictions.shape[0])
