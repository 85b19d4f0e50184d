"""`SamPredictor`: the familiar segment-anything predictor interface for EfficientViT-SAM.

Thread safety: the per-image state (`set_image`) is thread-local, so one `SamPredictor` may be
shared by threads; each thread sees only the image it set itself, and the model is only read.
For explicit state, use `for_image(image)` (an immutable `ImageEmbedding`) with
`predict_embedding`, or the stateless functions in `autolabel.models.efficientvit_sam.inference`.
"""

import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from autolabel.models.efficientvit_sam.inference import (
    PROMPT_TRANSFORM,
    decode_prompts,
    encode_images,
    model_device,
)
from autolabel.models.efficientvit_sam.sam import LOW_RES_MASK_SIZE, EfficientViTSam
from autolabel.models.efficientvit_sam.validation import (
    check_boxes,
    check_points,
    check_torch_prompts,
)
from autolabel.models.errors import ImageNotSetError, InvalidInputError
from autolabel.models.transforms import PromptTransform, postprocess_masks
from autolabel.models.types import ImageEmbedding

Prediction = tuple[npt.NDArray[Any], npt.NDArray[np.float32], npt.NDArray[np.float32]]


class SamPredictor:
    """Prompted mask prediction on one image at a time (per thread).

    Args:
        model: An `EfficientViTSam` in eval mode, on the device to run on.
    """

    def __init__(self, model: EfficientViTSam) -> None:
        self.model = model
        self._local = threading.local()

    @property
    def transform(self) -> PromptTransform:
        """Original-frame to 1024-prompt-frame transform (segment-anything's interface)."""
        return PROMPT_TRANSFORM

    @property
    def device(self) -> torch.device:
        """Device of the model; prompt tensors for `predict_torch` must live there."""
        return model_device(self.model)

    def for_image(self, image: npt.NDArray[np.uint8]) -> ImageEmbedding:
        """Encode an (H, W, 3) uint8 RGB image into an immutable, shareable embedding."""
        return encode_images(self.model, [image])[0]

    def set_image(self, image: npt.NDArray[np.uint8], image_format: str = "RGB") -> None:
        """Encode an (H, W, 3) uint8 image for this thread's later `predict` calls.

        Args:
            image: (H, W, 3) uint8 in `image_format`; grayscale (H, W) is converted to RGB,
                RGBA and other dtypes raise `InvalidInputError`.
            image_format: "RGB" or "BGR".
        """
        if image_format not in ("RGB", "BGR"):
            raise InvalidInputError(f"expected image_format 'RGB' or 'BGR', got {image_format!r}")
        if image_format == "BGR" and isinstance(image, np.ndarray) and image.ndim == 3:
            image = image[..., ::-1]
        self._local.embedding = self.for_image(image)

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Use an embedding from `for_image` as this thread's current image."""
        self._local.embedding = embedding

    def reset_image(self) -> None:
        """Forget this thread's image."""
        self._local.embedding = None

    @property
    def is_image_set(self) -> bool:
        """Whether this thread has set an image."""
        return getattr(self._local, "embedding", None) is not None

    def get_image_embedding(self) -> Tensor:
        """(1, 256, 64, 64) float32 embedding of this thread's image."""
        return self._current().embedding

    @property
    def original_size(self) -> tuple[int, int]:
        """(H, W) of this thread's image."""
        return self._current().original_size

    @property
    def input_size(self) -> tuple[int, int]:
        """(h', w') of this thread's image in the 1024 prompt frame."""
        return self._current().prompt_size

    def _current(self) -> ImageEmbedding:
        embedding: ImageEmbedding | None = getattr(self._local, "embedding", None)
        if embedding is None:
            raise ImageNotSetError("expected set_image(...) in this thread before prediction")
        return embedding

    def predict(
        self,
        point_coords: npt.ArrayLike | None = None,
        point_labels: npt.ArrayLike | None = None,
        box: npt.ArrayLike | None = None,
        mask_input: npt.ArrayLike | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for one prompt on this thread's image (see `predict_embedding`)."""
        return self.predict_embedding(
            self._current(),
            point_coords=point_coords,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            multimask_output=multimask_output,
            return_logits=return_logits,
        )

    def predict_embedding(
        self,
        embedding: ImageEmbedding,
        *,
        point_coords: npt.ArrayLike | None = None,
        point_labels: npt.ArrayLike | None = None,
        box: npt.ArrayLike | None = None,
        mask_input: npt.ArrayLike | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for one prompt given in original pixel coordinates.

        Args:
            embedding: The encoded image.
            point_coords: (N, 2) xy pixels, or None. Must be finite; may lie outside the image.
            point_labels: (N,) labels, 1 foreground / 0 background.
            box: (4,) or (1, 4) xyxy pixels, or None. Clipped to the image; inverted
                (x1 < x0 or y1 < y0), empty, non-finite or fully outside boxes raise.
            mask_input: (1, 256, 256) logits from a previous call, or None.
            multimask_output: 3 masks instead of 1.
            return_logits: Return float logits instead of bool masks.

        Returns:
            masks (C, H, W) bool (float32 logits with `return_logits`), iou_predictions (C,)
            float32, low_res_logits (C, 256, 256) float32; C = 3 or 1.

        Raises:
            InvalidInputError: any malformed prompt (see above), or no prompt at all.
        """
        coords_t = labels_t = box_t = mask_t = None
        size = embedding.original_size
        if point_coords is not None:
            coords, labels = check_points(point_coords, point_labels)
            coords = PROMPT_TRANSFORM.apply_coords(coords, size)
            coords_t = torch.as_tensor(coords, dtype=torch.float32)[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int)[None]
        if box is not None:
            boxes = check_boxes(box, size)
            if boxes.shape[0] != 1:
                raise InvalidInputError(f"expected one xyxy box, got {boxes.shape[0]} boxes")
            box_t = torch.as_tensor(PROMPT_TRANSFORM.apply_boxes(boxes, size), dtype=torch.float)
        if mask_input is not None:
            mask_t = _check_mask_input(mask_input)[None]
        masks, iou, low_res = self._predict_torch(
            embedding, coords_t, labels_t, box_t, mask_t, multimask_output, return_logits
        )
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    def predict_torch(
        self,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None = None,
        mask_input: Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Batched prompts, already in the 1024 prompt frame (`transform.apply_*_torch`).

        Args:
            point_coords: (B, N, 2) float xy, or None.
            point_labels: (B, N) int labels, or None.
            boxes: (B, 4) float xyxy, or None.
            mask_input: (B, 1, 256, 256) float logits, or None.
            multimask_output: 3 masks per prompt instead of 1.
            return_logits: Return float logits instead of bool masks.

        Returns:
            masks (B, C, H, W) bool (or float logits), iou_predictions (B, C), low_res_logits
            (B, C, 256, 256), on the model's device.
        """
        check_torch_prompts(point_coords, point_labels, boxes, mask_input)
        return self._predict_torch(
            self._current(),
            point_coords,
            point_labels,
            boxes,
            mask_input,
            multimask_output,
            return_logits,
        )

    def _predict_torch(
        self,
        embedding: ImageEmbedding,
        point_coords: Tensor | None,
        point_labels: Tensor | None,
        boxes: Tensor | None,
        mask_input: Tensor | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        low_res, iou = decode_prompts(
            self.model,
            embedding,
            point_coords=point_coords,
            point_labels=point_labels,
            boxes=boxes,
            mask_input=mask_input,
            multimask_output=multimask_output,
        )
        with torch.inference_mode():
            masks = postprocess_masks(low_res, embedding.prompt_size, embedding.original_size)
            if not return_logits:
                masks = masks > self.model.mask_threshold
        return masks, iou, low_res


def _check_mask_input(mask_input: npt.ArrayLike) -> Tensor:
    array = np.asarray(mask_input, dtype=np.float32)
    expected = (1, LOW_RES_MASK_SIZE, LOW_RES_MASK_SIZE)
    if array.shape != expected:
        raise InvalidInputError(f"expected mask_input of shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidInputError("expected finite mask_input logits, got NaN or inf")
    return torch.from_numpy(array.copy())
