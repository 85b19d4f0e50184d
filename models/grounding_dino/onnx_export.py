"""ONNX export of the GroundingDINO image side.

The exported graph takes images of one resized shape (fixed H, W; any batch size B) and a
caption of any length T, with the caption's cached text features as inputs, so the text encoder
runs once per prompt in torch and the image side runs in ONNX Runtime or OpenVINO
(`autolabel.models.grounding_dino.runtime`):

    inputs:  pixel_values (B, 3, H, W) float32, text_features (1, T, d_model) float32,
             text_self_attention_mask (1, T, T) bool, text_position_ids (1, T) int64
    outputs: logits (B, Q, T) float32, boxes (B, Q, 4) float32 cxcywh normalized

H and W stay fixed: the multi-scale deformable attention's level shapes are Python integers
when traced, so a graph serves one shape bucket. It uses the TorchScript-based exporter
(`dynamo=False`), which needs no `onnxscript`.
"""

import warnings
from pathlib import Path

import torch
from torch import nn
from transformers import GroundingDinoForObjectDetection

from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.text import TextFeatures
from autolabel.models.runtime.sessions import ONNX_EXPORT_LOCK

INPUT_NAMES = ("pixel_values", "text_features", "text_self_attention_mask", "text_position_ids")
OUTPUT_NAMES = ("logits", "boxes")
DYNAMIC_AXES = {
    "pixel_values": {0: "batch"},
    "text_features": {1: "tokens"},
    "text_self_attention_mask": {1: "tokens", 2: "tokens"},
    "text_position_ids": {1: "tokens"},
    "logits": {0: "batch", 2: "tokens"},
    "boxes": {0: "batch"},
}


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
    image_hw: tuple[int, int],
    opset: int = 17,
) -> None:
    """Export the image side for one shape bucket (any batch size and caption length).

    Args:
        model: The detector, in eval mode, on the CPU, in float32.
        path: Output `.onnx` file (written to a temporary name first, then renamed).
        text: Features of an example caption (values are example inputs only).
        image_hw: Resized (height, width) of the bucket.
        opset: ONNX opset (>= 16 for GridSample).
    """
    pixel_values = torch.zeros((2, 3, *image_hw), dtype=torch.float32)
    partial = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = (pixel_values, text.features, text.self_attention_mask, text.position_ids)
    with ONNX_EXPORT_LOCK, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values in the graph
        torch.onnx.export(
            ImageSide(model).eval(),
            inputs,
            str(partial),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=opset,
            dynamic_axes=DYNAMIC_AXES,
            dynamo=False,
        )
    partial.replace(path)
