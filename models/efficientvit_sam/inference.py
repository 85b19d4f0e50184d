"""Stateless EfficientViT-SAM inference: encode images, decode prompts, segment boxes in batches.

Every function takes the model and immutable inputs and mutates nothing, so one model can serve
several threads at once (PyTorch modules in eval mode are read-only in forward).

Precision: the image encoder runs in the dtype of its parameters (see
`autolabel.models.efficientvit_sam.optimize.prepare_for_inference`); embeddings are returned in
float32, and the prompt encoder and mask decoder run in float32.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.efficientvit_sam.validation import check_boxes
from autolabel.models.errors import InvalidInputError
from autolabel.models.transforms import (
    PromptTransform,
    postprocess_masks,
    preprocess_image,
    validate_image,
)
from autolabel.models.types import ImageEmbedding, MaskSet

PROMPT_TRANSFORM = PromptTransform()


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's first parameter."""
    return next(model.parameters()).device


def _encoder_dtype(model: EfficientViTSam) -> torch.dtype:
    return next(model.image_encoder.parameters()).dtype


@torch.inference_mode()
def encode_images(
    model: EfficientViTSam, images: Sequence[npt.NDArray[np.uint8]], *, batch_size: int = 8
) -> list[ImageEmbedding]:
    """Encode images (any sizes) with one encoder forward per `batch_size` images.

    Args:
        model: The model (eval mode) on its device.
        images: (H_i, W_i, 3) uint8 RGB arrays (grayscale (H, W) is converted to RGB).
        batch_size: Images per encoder forward.

    Returns:
        One `ImageEmbedding` per image, in order; each embedding is (1, 256, 64, 64) float32.

    Raises:
        InvalidInputError: an image that is not uint8 RGB, or batch_size < 1.
    """
    if batch_size < 1:
        raise InvalidInputError(f"expected batch_size >= 1, got {batch_size}")
    checked = [validate_image(image) for image in images]
    device, dtype = model_device(model), _encoder_dtype(model)
    size = model.encoder_input_size
    out: list[ImageEmbedding] = []
    for start in range(0, len(checked), batch_size):
        chunk = checked[start : start + batch_size]
        x = torch.stack([preprocess_image(image, size) for image in chunk])
        x = x.to(device=device, dtype=dtype)
        if _is_channels_last(model):
            x = x.contiguous(memory_format=torch.channels_last)
        embeddings = model.image_encoder(x).float()
        for i, image in enumerate(chunk):
            hw = (int(image.shape[0]), int(image.shape[1]))
            out.append(
                ImageEmbedding(
                    embedding=embeddings[i : i + 1].contiguous(),
                    original_size=hw,
                    prompt_size=PROMPT_TRANSFORM.prompt_size(hw),
                )
            )
    return out


def _is_channels_last(model: EfficientViTSam) -> bool:
    weight = next(model.image_encoder.parameters())
    return weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def decode_prompts(
    model: EfficientViTSam,
    embedding: ImageEmbedding,
    *,
    point_coords: Tensor | None = None,
    point_labels: Tensor | None = None,
    boxes: Tensor | None = None,
    mask_input: Tensor | None = None,
    multimask_output: bool = True,
) -> tuple[Tensor, Tensor]:
    """Decode B prompts on one encoded image (prompts already in the 1024 prompt frame).

    Args:
        model: The model.
        embedding: The encoded image.
        point_coords: (B, N, 2) float xy in the prompt frame, or None.
        point_labels: (B, N) int labels, required with point_coords.
        boxes: (B, 4) float xyxy in the prompt frame, or None.
        mask_input: (B, 1, 256, 256) float logits, or None.
        multimask_output: 3 masks per prompt instead of 1.

    Returns:
        low_res_logits (B, C, 256, 256) float32 and iou_predictions (B, C) float32.
    """
    if point_coords is not None and point_labels is None:
        raise InvalidInputError("expected point_labels with point_coords, got None")
    if point_coords is None and boxes is None and mask_input is None:
        raise InvalidInputError("expected at least one prompt (points, boxes or mask_input)")
    device = embedding.embedding.device
    points = None
    if point_coords is not None and point_labels is not None:
        points = (point_coords.to(device, torch.float32), point_labels.to(device))
    return model.decode(
        embedding.embedding,
        points=points,
        boxes=None if boxes is None else boxes.to(device, torch.float32),
        mask_input=None if mask_input is None else mask_input.to(device, torch.float32),
        multimask_output=multimask_output,
    )


def _to_mask_set(
    logits: Tensor, low_res: Tensor, iou: Tensor, boxes_px: npt.NDArray[np.float64]
) -> MaskSet:
    """(N, H, W) full-res logits -> MaskSet sharing one Fortran-ordered uint8 buffer."""
    n = logits.shape[0]
    # (N, W, H) C-order memory is (H, W, N) Fortran order: one transpose copy, then views only.
    buffer = (logits > 0.0).transpose(1, 2).contiguous().cpu().numpy().view(np.uint8)
    fortran = buffer.transpose(2, 1, 0)
    masks = buffer.view(np.bool_).transpose(0, 2, 1)
    return MaskSet(
        masks=masks,
        masks_fortran=fortran,
        low_res_logits=low_res.float().cpu().numpy(),
        iou_predictions=iou.float().cpu().numpy(),
        boxes_xyxy_px=boxes_px.reshape(n, 4),
    )


def _empty(height: int, width: int) -> MaskSet:
    fortran = np.zeros((height, width, 0), dtype=np.uint8, order="F")
    return MaskSet(
        masks=fortran.view(np.bool_).transpose(2, 0, 1),
        masks_fortran=fortran,
        low_res_logits=np.zeros((0, 256, 256), dtype=np.float32),
        iou_predictions=np.zeros((0,), dtype=np.float32),
        boxes_xyxy_px=np.zeros((0, 4), dtype=np.float64),
    )


@torch.inference_mode()
def segment_boxes(
    model: EfficientViTSam,
    embedding: ImageEmbedding,
    boxes_xyxy_px: object,
    *,
    multimask_output: bool = False,
) -> MaskSet:
    """Masks for all boxes of one encoded image in one decoder call.

    Args:
        model: The model.
        embedding: The encoded image.
        boxes_xyxy_px: (N, 4) xyxy boxes in original pixels; clipped to the image, inverted or
            non-finite boxes raise. N = 0 gives an empty MaskSet.
        multimask_output: Decode 3 masks per box and keep the one with the highest predicted IoU.

    Returns:
        A MaskSet with one mask per box, in box order.
    """
    boxes = check_boxes(boxes_xyxy_px, embedding.original_size)
    if boxes.shape[0] == 0:
        return _empty(*embedding.original_size)
    prompt_boxes = PROMPT_TRANSFORM.apply_boxes(boxes, embedding.original_size)
    box_t = torch.as_tensor(prompt_boxes, dtype=torch.float32)
    low_res, iou = decode_prompts(model, embedding, boxes=box_t, multimask_output=multimask_output)
    if multimask_output:
        best = iou.argmax(dim=1)
        rows = torch.arange(iou.shape[0], device=iou.device)
        low_res, iou = low_res[rows, best][:, None], iou[rows, best][:, None]
    logits = postprocess_masks(low_res, embedding.prompt_size, embedding.original_size)
    return _to_mask_set(logits[:, 0], low_res[:, 0], iou[:, 0], boxes)


def segment_boxes_batch(
    model: EfficientViTSam,
    images: Sequence[npt.NDArray[np.uint8]],
    boxes_per_image: Sequence[object],
    *,
    multimask_output: bool = False,
    batch_size: int = 8,
) -> list[MaskSet]:
    """Encode images in batches, then decode all boxes of each image in one decoder call.

    Args:
        model: The model (eval mode).
        images: (H_i, W_i, 3) uint8 RGB images.
        boxes_per_image: For each image, (N_i, 4) xyxy pixel boxes (N_i may be 0).
        multimask_output: See `segment_boxes`.
        batch_size: Images per encoder forward.

    Returns:
        One MaskSet per image, in order.
    """
    if len(images) != len(boxes_per_image):
        raise InvalidInputError(
            f"expected one box array per image, got {len(images)} images and "
            f"{len(boxes_per_image)} box arrays"
        )
    checked = [validate_image(image) for image in images]
    for i, (image, boxes) in enumerate(zip(checked, boxes_per_image, strict=True)):
        try:
            check_boxes(boxes, (int(image.shape[0]), int(image.shape[1])))
        except InvalidInputError as exc:
            raise InvalidInputError(f"image {i}: {exc}") from exc
    embeddings = encode_images(model, checked, batch_size=batch_size)
    return [
        segment_boxes(model, emb, boxes, multimask_output=multimask_output)
        for emb, boxes in zip(embeddings, boxes_per_image, strict=True)
    ]
