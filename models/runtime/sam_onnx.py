"""ONNX graphs of EfficientViT-SAM, and ONNX Runtime sessions that run them.

Two graphs per model, both float32, exported with the TorchScript-based exporter
(`dynamo=False`, no `onnxscript` needed) and checked with `onnx.checker`:

    encoder:  images (B, 3, S, S) normalised and padded  ->  image_embeddings (B, 256, 64, 64)
    decoder:  image_embeddings (1, 256, 64, 64), boxes (N, 4) xyxy in the 1024 prompt frame
              ->  low_res_logits (N, 1, 256, 256), iou_predictions (N, 1)

B and N are dynamic axes. The decoder is the prompt encoder plus mask decoder for box prompts
with one mask per box (what labeling uses); point and mask prompts stay with torch.
"""

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError
from autolabel.models.runtime.sessions import (
    ONNX_EXPORT_LOCK,
    GraphRunner,
    as_numpy,
    as_tensor,
    ort_runner,
)

ENCODER_INPUTS, ENCODER_OUTPUTS = ("images",), ("image_embeddings",)
DECODER_INPUTS = ("image_embeddings", "boxes")
DECODER_OUTPUTS = ("low_res_logits", "iou_predictions")
OPSET = 17


class BoxDecoder(nn.Module):
    """`EfficientViTSam.decode` for N box prompts and one mask each, as a traceable module."""

    def __init__(self, model: EfficientViTSam) -> None:
        super().__init__()
        self.sam = model

    def forward(self, image_embeddings: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(1, 256, 64, 64) embedding and (N, 4) 1024-frame xyxy boxes -> (N, 1, 256, 256)
        logits and (N, 1) predicted IoU."""
        return self.sam.decode(
            image_embeddings, points=None, boxes=boxes, mask_input=None, multimask_output=False
        )


def _export(
    module: nn.Module,
    example: tuple[Tensor, ...],
    path: Path,
    names: tuple[tuple[str, ...], tuple[str, ...]],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    import onnx

    inputs, outputs = names
    path.parent.mkdir(parents=True, exist_ok=True)
    with ONNX_EXPORT_LOCK, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def export_encoder(model: EfficientViTSam, path: Path) -> None:
    """Export the image encoder of a float32 CPU model (unfolded or BatchNorm-folded)."""
    size = model.encoder_input_size
    example = (torch.zeros((1, 3, size, size), dtype=torch.float32),)
    _export(
        model.image_encoder,
        example,
        path,
        (ENCODER_INPUTS, ENCODER_OUTPUTS),
        {"images": {0: "batch"}, "image_embeddings": {0: "batch"}},
    )


def export_box_decoder(model: EfficientViTSam, path: Path) -> None:
    """Export the prompt encoder and mask decoder for box prompts (float32, CPU)."""
    example = (torch.zeros((1, 256, 64, 64)), torch.tensor([[10.0, 20.0, 300.0, 400.0]] * 2))
    _export(
        BoxDecoder(model),
        example,
        path,
        (DECODER_INPUTS, DECODER_OUTPUTS),
        {
            "boxes": {0: "boxes"},
            "low_res_logits": {0: "boxes"},
            "iou_predictions": {0: "boxes"},
        },
    )


class ExportedSam:
    """`SegmenterBackend` of the exported encoder and box decoder, in any `GraphRunner`.

    Args:
        encoder: Runner of the exported encoder (`export_encoder`).
        decoder: Runner of the exported box decoder (`export_box_decoder`).
        input_size: S of the encoder input.
        name: What runs, e.g. "onnxruntime-fp32" (logs and run records).
    """

    def __init__(
        self, encoder: GraphRunner, decoder: GraphRunner, *, input_size: int, name: str
    ) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.input_size = input_size
        self.name = name

    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised images -> (B, 256, 64, 64) float32 embeddings (CPU)."""
        size = self.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InvalidInputError(f"expected (B, 3, {size}, {size}), got {tuple(images.shape)}")
        (embeddings,) = self.encoder({"images": as_numpy(images)}, ENCODER_OUTPUTS)
        return as_tensor(embeddings)

    def decode_boxes(self, embedding: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(1, 256, 64, 64) embedding, (N, 4) 1024-frame xyxy -> (N, 1, 256, 256) logits and
        (N, 1) predicted IoU (CPU, float32)."""
        if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
            raise InvalidInputError(f"expected (N >= 1, 4) boxes, got {tuple(boxes.shape)}")
        feed = {"image_embeddings": as_numpy(embedding), "boxes": as_numpy(boxes)}
        logits, iou = self.decoder(feed, DECODER_OUTPUTS)
        return as_tensor(logits), as_tensor(iou)


class OnnxSam(ExportedSam):
    """The exported graphs in ONNX Runtime ("onnxruntime-fp32").

    Args:
        encoder: Path of the exported encoder.
        decoder: Path of the exported box decoder.
        input_size: S of the encoder input.
        providers: ONNX Runtime execution providers (default: the CPU provider).
        threads: Intra-op threads per session (None: ONNX Runtime's default).
    """

    def __init__(
        self,
        encoder: Path,
        decoder: Path,
        *,
        input_size: int,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        threads: int | None = None,
    ) -> None:
        super().__init__(
            ort_runner(encoder, providers=providers, threads=threads),
            ort_runner(decoder, providers=providers, threads=threads),
            input_size=input_size,
            name="onnxruntime-fp32",
        )
