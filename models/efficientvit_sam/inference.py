"""Stateless EfficientViT-SAM inference: encode images, decode prompts, segment boxes in batches.

Every function takes the model and immutable inputs and mutates nothing, so one model can serve
several threads at once (PyTorch modules in eval mode are read-only in forward).

Precision: the image encoder runs in the dtype of its parameters (see
`autolabel.models.efficientvit_sam.optimize.prepare_for_inference`); embeddings are returned in
float32, and the prompt encoder and mask decoder run in float32.

`encode_images`, `segment_boxes` and `segment_boxes_batch` also take any `SegmenterBackend`
(`autolabel.models.runtime.backends`), e.g. the model in ONNX Runtime; point and mask prompts,
and several masks per box, need the torch model.

Preprocessing (resize, normalise, pad) runs on the host in numpy/PIL (`preprocess_image`), or,
for a backend on a CUDA device, in torch on that device (`preprocess_images_torch`, the same
bits): each batch is copied once from pinned memory on a side stream while the previous batch
is being encoded.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.efficientvit_sam.validation import check_boxes
from autolabel.models.errors import InvalidInputError
from autolabel.models.runtime.backends import SegmenterBackend, as_segmenter
from autolabel.models.transforms import (
    PromptTransform,
    postprocess_masks,
    preprocess_image,
    preprocess_images_torch,
    stage_images,
    validate_image,
)
from autolabel.models.types import ImageEmbedding, MaskSet

PROMPT_TRANSFORM = PromptTransform()
#: Masks upscaled to full resolution at once when building a MaskSet.
_UPSCALE_CHUNK = 16
#: Where encoder inputs are made: "auto" (torch on the backend's device when that is CUDA,
#: else numpy/PIL), "host" (numpy/PIL) or "torch" (torch on the backend's device, CPU or CUDA).
Preprocess = Literal["auto", "host", "torch"]


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's first parameter."""
    return next(model.parameters()).device


@dataclass(frozen=True, slots=True)
class _Upload:
    """Images copied (or being copied) to the device, and the event that marks the copy's end."""

    images: list[Tensor]
    done: torch.cuda.Event | None


def _upload(
    chunk: Sequence[npt.NDArray[np.uint8]], device: torch.device, stream: torch.cuda.Stream | None
) -> _Upload:
    """Start copying `chunk` to `device`, on `stream` when given (CUDA)."""
    if stream is None:
        return _Upload(stage_images(chunk, device), None)
    with torch.cuda.stream(stream):
        images = stage_images(chunk, device)
        done = stream.record_event()
    return _Upload(images, done)


def _arrived(upload: _Upload, device: torch.device) -> list[Tensor]:
    """The uploaded images, usable on the current stream (which waits for the copy)."""
    if upload.done is not None:
        current = torch.cuda.current_stream(device)
        current.wait_event(upload.done)
        for image in upload.images:  # the caching allocator must not reuse them too early
            image.record_stream(current)
    return upload.images


def _device_batches(
    images: Sequence[npt.NDArray[np.uint8]], size: int, device: torch.device, batch_size: int
) -> Iterator[Tensor]:
    """(B, 3, S, S) float32 encoder inputs made in torch on `device`, one batch per step.

    On CUDA, the copy of batch k+1 is issued on a side stream before batch k is preprocessed
    and handed out, so it overlaps with the encoding of batch k on the current stream.
    """
    chunks = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    stream = None
    if device.type == "cuda":
        stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
    pending = _upload(chunks[0], device, stream) if chunks else None
    for k in range(len(chunks)):
        current = pending
        pending = _upload(chunks[k + 1], device, stream) if k + 1 < len(chunks) else None
        if current is not None:
            yield preprocess_images_torch(_arrived(current, device), size)


def _host_batches(
    images: Sequence[npt.NDArray[np.uint8]], size: int, batch_size: int
) -> Iterator[Tensor]:
    """(B, 3, S, S) float32 CPU encoder inputs made with numpy/PIL, one batch per step."""
    for start in range(0, len(images), batch_size):
        yield torch.stack([preprocess_image(im, size) for im in images[start : start + batch_size]])


def backend_device(backend: SegmenterBackend) -> torch.device:
    """The device a backend computes on: its `device` attribute if it is a torch device, else
    the CPU (ONNX Runtime, OpenVINO)."""
    device = getattr(backend, "device", None)
    return device if isinstance(device, torch.device) else torch.device("cpu")


@torch.inference_mode()
def encode_images(
    model: EfficientViTSam | SegmenterBackend,
    images: Sequence[npt.NDArray[np.uint8]],
    *,
    batch_size: int = 8,
    preprocess: Preprocess = "auto",
) -> list[ImageEmbedding]:
    """Encode images (any sizes) with one encoder forward per `batch_size` images.

    Args:
        model: The model (eval mode) on its device, or a `SegmenterBackend`.
        images: (H_i, W_i, 3) uint8 RGB arrays (grayscale (H, W) is converted to RGB).
        batch_size: Images per encoder forward.
        preprocess: Where encoder inputs are made (see `Preprocess`); both give the same bits.

    Returns:
        One `ImageEmbedding` per image, in order; each embedding is (1, 256, 64, 64) float32.

    Raises:
        InvalidInputError: an image that is not uint8 RGB, or batch_size < 1.
    """
    if batch_size < 1:
        raise InvalidInputError(f"expected batch_size >= 1, got {batch_size}")
    backend = as_segmenter(model)
    checked = [validate_image(image) for image in images]
    size = backend.input_size
    device = backend_device(backend)
    on_device = preprocess == "torch" or (preprocess == "auto" and device.type == "cuda")
    batches = (
        _device_batches(checked, size, device, batch_size)
        if on_device
        else _host_batches(checked, size, batch_size)
    )
    out: list[ImageEmbedding] = []
    for start, batch in zip(range(0, len(checked), batch_size), batches, strict=True):
        embeddings = backend.encode(batch)
        for i, image in enumerate(checked[start : start + batch_size]):
            hw = (int(image.shape[0]), int(image.shape[1]))
            out.append(
                ImageEmbedding(
                    # A copy: owns its memory (a compiled encoder may reuse its output buffers).
                    embedding=embeddings[i : i + 1].clone(memory_format=torch.contiguous_format),
                    original_size=hw,
                    prompt_size=PROMPT_TRANSFORM.prompt_size(hw),
                )
            )
    return out


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
    low_res: Tensor, iou: Tensor, embedding: ImageEmbedding, boxes_px: npt.NDArray[np.float64]
) -> MaskSet:
    """(N, 256, 256) logits -> MaskSet whose masks share one Fortran-ordered uint8 buffer.

    Full-resolution logits are made `_UPSCALE_CHUNK` masks at a time, so peak memory stays
    near the size of the uint8 result even for many boxes on a large image.
    """
    n = low_res.shape[0]
    height, width = embedding.original_size
    # (N, W, H) C-order memory is (H, W, N) Fortran order: masks are written transposed once.
    buffer = np.empty((n, width, height), dtype=np.uint8)
    target = torch.from_numpy(buffer)
    for start in range(0, n, _UPSCALE_CHUNK):
        chunk = low_res[start : start + _UPSCALE_CHUNK, None].float()
        logits = postprocess_masks(chunk, embedding.prompt_size, embedding.original_size)
        target[start : start + chunk.shape[0]].copy_((logits[:, 0] > 0.0).transpose(1, 2))
    return MaskSet(
        masks=buffer.view(np.bool_).transpose(0, 2, 1),
        masks_fortran=buffer.transpose(2, 1, 0),
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
    model: EfficientViTSam | SegmenterBackend,
    embedding: ImageEmbedding,
    boxes_xyxy_px: object,
    *,
    multimask_output: bool = False,
    max_boxes_per_call: int = 64,
) -> MaskSet:
    """Masks for all boxes of one encoded image, one decoder call per `max_boxes_per_call` boxes.

    Args:
        model: The model.
        embedding: The encoded image.
        boxes_xyxy_px: (N, 4) xyxy boxes in original pixels; clipped to the image, inverted or
            non-finite boxes raise. N = 0 gives an empty MaskSet.
        multimask_output: Decode 3 masks per box and keep the one with the highest predicted IoU.
        max_boxes_per_call: Boxes per decoder call (one call when N <= this); bounds the
            decoder's memory (it replicates the 4 MB embedding per box).

    Returns:
        A MaskSet with one mask per box, in box order; masks are computed on the model's device
        and returned on the CPU.
    """
    if max_boxes_per_call < 1:
        raise InvalidInputError(f"expected max_boxes_per_call >= 1, got {max_boxes_per_call}")
    boxes = check_boxes(boxes_xyxy_px, embedding.original_size)
    if boxes.shape[0] == 0:
        return _empty(*embedding.original_size)
    prompt_boxes = PROMPT_TRANSFORM.apply_boxes(boxes, embedding.original_size)
    box_t = torch.as_tensor(prompt_boxes, dtype=torch.float32)
    if multimask_output and not isinstance(model, EfficientViTSam):
        raise InvalidInputError(f"expected the torch model for multimask output, got {model.name}")
    backend = as_segmenter(model)
    low_res_parts, iou_parts = [], []
    for start in range(0, box_t.shape[0], max_boxes_per_call):
        part = box_t[start : start + max_boxes_per_call]
        if multimask_output and isinstance(model, EfficientViTSam):
            low_res, iou = decode_prompts(model, embedding, boxes=part, multimask_output=True)
        else:
            low_res, iou = backend.decode_boxes(embedding.embedding, part)
        best = iou.argmax(dim=1)  # column 0 with one mask per box
        rows = torch.arange(iou.shape[0], device=iou.device)
        low_res_parts.append(low_res[rows, best])
        iou_parts.append(iou[rows, best])
    return _to_mask_set(torch.cat(low_res_parts), torch.cat(iou_parts), embedding, boxes)


def segment_boxes_batch(
    model: EfficientViTSam | SegmenterBackend,
    images: Sequence[npt.NDArray[np.uint8]],
    boxes_per_image: Sequence[object],
    *,
    multimask_output: bool = False,
    batch_size: int = 8,
    max_boxes_per_call: int = 64,
    preprocess: Preprocess = "auto",
) -> list[MaskSet]:
    """Encode images in batches, then decode all boxes of each image in one decoder call.

    Args:
        model: The model (eval mode).
        images: (H_i, W_i, 3) uint8 RGB images.
        boxes_per_image: For each image, (N_i, 4) xyxy pixel boxes (N_i may be 0).
        multimask_output: See `segment_boxes`.
        batch_size: Images per encoder forward.
        max_boxes_per_call: See `segment_boxes`.
        preprocess: See `encode_images`.

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
    embeddings = encode_images(model, checked, batch_size=batch_size, preprocess=preprocess)
    return [
        segment_boxes(
            model,
            emb,
            boxes,
            multimask_output=multimask_output,
            max_boxes_per_call=max_boxes_per_call,
        )
        for emb, boxes in zip(embeddings, boxes_per_image, strict=True)
    ]
