"""The segmenter runtime interface labeling uses, and its torch implementation.

A `SegmenterBackend` encodes preprocessed image batches and decodes box prompts; the labeling
pipeline needs nothing else of EfficientViT-SAM. Implementations: `TorchSegmenter` (the model
itself, in any dtype and memory format `prepare_for_inference` gives it) and
`autolabel.models.runtime.sam_onnx.OnnxSam` (ONNX Runtime).
"""

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from autolabel.models.efficientvit_sam.sam import EfficientViTSam


@runtime_checkable
class SegmenterBackend(Protocol):
    """Image encoder and box decoder of one EfficientViT-SAM model.

    Attributes:
        name: What runs, for logs and run records, e.g. "torch-fp32" or "onnxruntime-fp32".
        input_size: S, the square side of the encoder input.
    """

    name: str
    input_size: int

    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised, padded float32 images (on the CPU, or already on the
        backend's CUDA device) -> (B, 256, 64, 64) float32 embeddings (on the backend's
        device)."""
        ...

    def decode_boxes(self, embedding: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(1, 256, 64, 64) embedding and (N, 4) xyxy boxes in the 1024 prompt frame ->
        (N, 1, 256, 256) float32 mask logits and (N, 1) float32 predicted IoU."""
        ...


class TorchSegmenter:
    """`SegmenterBackend` over an `EfficientViTSam` (eval mode, on its device).

    The encoder runs in the dtype and memory format of its parameters (see
    `prepare_for_inference`); the prompt encoder and mask decoder run in float32.
    """

    def __init__(self, model: EfficientViTSam) -> None:
        self.model = model
        weight = next(model.image_encoder.parameters())
        self.device, self.dtype = weight.device, weight.dtype
        self.channels_last = weight.dim() == 4 and weight.is_contiguous(
            memory_format=torch.channels_last
        )
        self.input_size = model.encoder_input_size
        self.name = f"torch-{str(self.dtype).removeprefix('torch.')}"

    @torch.inference_mode()
    def encode(self, images: Tensor) -> Tensor:
        """See `SegmenterBackend.encode`."""
        x = images.to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        embeddings: Tensor = self.model.image_encoder(x)
        return embeddings.float()

    @torch.inference_mode()
    def decode_boxes(self, embedding: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """See `SegmenterBackend.decode_boxes`."""
        return self.model.decode(
            embedding.to(self.device, torch.float32),
            points=None,
            boxes=boxes.to(self.device, torch.float32),
            mask_input=None,
            multimask_output=False,
        )


def as_segmenter(model: EfficientViTSam | SegmenterBackend) -> SegmenterBackend:
    """`model` as a backend: a torch model is wrapped in `TorchSegmenter`."""
    return TorchSegmenter(model) if isinstance(model, EfficientViTSam) else model
