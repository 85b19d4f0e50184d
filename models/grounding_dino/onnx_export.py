"""ONNX export of the GroundingDINO image side, and an ONNX Runtime runner.

The exported graph takes one shape bucket (fixed batch, height, width) and one caption length
(fixed T), with the caption's cached text features as inputs, so the text encoder runs once per
prompt in torch (or anywhere) and the image side runs in ONNX Runtime or TensorRT:

    inputs:  pixel_values (B, 3, H, W) float32, text_features (1, T, d_model) float32,
             text_self_attention_mask (1, T, T) bool, text_position_ids (1, T) int64
    outputs: logits (B, Q, T) float32, boxes (B, Q, 4) float32 cxcywh normalized

It uses the TorchScript-based exporter (`dynamo=False`), which needs no `onnxscript`.
"""

import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from transformers import GroundingDinoForObjectDetection

from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.text import TextFeatures

INPUT_NAMES = ("pixel_values", "text_features", "text_self_attention_mask", "text_position_ids")
OUTPUT_NAMES = ("logits", "boxes")


class ImageSide(nn.Module):
    """`image_forward` as a module whose inputs are plain tensors (for tracing)."""

    def __init__(self, model: GroundingDinoForObjectDetection) -> None:
        super().__init__()
        self.detector = model

    def forward(
        self,
        pixel_values: torch.Tensor,
        text_features: torch.Tensor,
        text_self_attention_mask: torch.Tensor,
        text_position_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring for shapes."""
        text = TextFeatures(
            input_ids=text_position_ids,  # only its length is used
            features=text_features,
            token_mask=torch.ones_like(text_position_ids, dtype=torch.bool),
            self_attention_mask=text_self_attention_mask,
            position_ids=text_position_ids,
        )
        return image_forward(self.detector, pixel_values, text)


def export_onnx(
    model: GroundingDinoForObjectDetection,
    path: Path,
    *,
    text: TextFeatures,
    batch_size: int,
    image_hw: tuple[int, int],
    opset: int = 17,
) -> None:
    """Export the image side for one shape bucket and one caption length.

    Args:
        model: The detector, in eval mode, on the CPU, in float32.
        path: Output `.onnx` file.
        text: Features of a caption of the length to export (values are example inputs only).
        batch_size: Images per call (B).
        image_hw: Resized (height, width) of the bucket.
        opset: ONNX opset (>= 16 for GridSample).
    """
    pixel_values = torch.zeros((batch_size, 3, *image_hw), dtype=torch.float32)
    inputs = (pixel_values, text.features, text.self_attention_mask, text.position_ids)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
        torch.onnx.export(
            ImageSide(model).eval(),
            inputs,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamo=False,
        )


class OnnxImageSide:
    """Runs an exported image side in ONNX Runtime."""

    def __init__(
        self, path: Path, providers: list[str] | None = None, threads: int | None = None
    ) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )
        shapes = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        self.pixel_shape: tuple[int, ...] = shapes["pixel_values"]
        self.text_length = int(shapes["text_position_ids"][1])

    def __call__(
        self, pixel_values: npt.NDArray[np.float32], text: TextFeatures
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(B, Q, T) logits and (B, Q, 4) cxcywh normalized boxes for one bucket batch.

        Raises:
            InvalidInputError: Images or caption length differ from the exported bucket.
        """
        length = int(text.position_ids.shape[1])
        if tuple(pixel_values.shape) != self.pixel_shape or length != self.text_length:
            raise InvalidInputError(
                f"expected images {self.pixel_shape} and a {self.text_length}-token caption "
                f"(the exported bucket), got {tuple(pixel_values.shape)} and {length} tokens"
            )
        feeds: dict[str, Any] = {
            "pixel_values": np.ascontiguousarray(pixel_values, dtype=np.float32),
            "text_features": text.features.detach().float().cpu().numpy(),
            "text_self_attention_mask": text.self_attention_mask.cpu().numpy(),
            "text_position_ids": text.position_ids.cpu().numpy().astype(np.int64),
        }
        logits, boxes = self.session.run(list(OUTPUT_NAMES), feeds)
        return cast(npt.NDArray[np.float32], logits), cast(npt.NDArray[np.float32], boxes)


class OnnxBucketSessions:
    """ONNX Runtime sessions of one model, exported on first use per (batch, H, W, T) bucket.

    Each export of SwinT-OGC takes tens of seconds, so callers keep the batch size fixed (pad a
    short last batch) and reuse this object across calls; the files live in `directory`.
    """

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        directory: Path,
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self._model = model
        self._directory = directory
        self._providers = providers
        self._threads = threads
        self._sessions: dict[tuple[int, int, int, int], OnnxImageSide] = {}

    def __call__(
        self, pixel_values: npt.NDArray[np.float32], text: TextFeatures
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(B, Q, T) logits and (B, Q, 4) boxes, exporting this bucket first if needed."""
        batch, _, height, width = pixel_values.shape
        key = (int(batch), int(height), int(width), int(text.position_ids.shape[1]))
        if key not in self._sessions:
            path = self._directory / "gdino_b{}_{}x{}_t{}.onnx".format(*key)
            export_onnx(self._model, path, text=text, batch_size=key[0], image_hw=key[1:3])
            self._sessions[key] = OnnxImageSide(path, self._providers, self._threads)
        return self._sessions[key](pixel_values, text)
