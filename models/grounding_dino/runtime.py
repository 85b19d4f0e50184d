"""Where the GroundingDINO image side runs: torch, or its ONNX export in ONNX Runtime/OpenVINO.

An `ImageSideRunner` maps a batch of same-shape pixel values and one caption's cached text
features to (B, Q, T) logits and (B, Q, 4) cxcywh boxes, as `forward.image_forward` does; the
detector (`detector.GroundingDinoDetector`) needs nothing else of its network.

`ExportedImageSide` exports one graph per resized image shape on first use (through a
`BucketExporter`, which caches the files: `autolabel.tasks.runtimes`), compiles it with a
`GraphRunner` factory, and keeps at most `max_buckets` shapes: a dataset of many distinct
image shapes runs its rarer shapes in the fallback runner (torch) rather than exporting each.
"""

import logging
import threading
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor
from transformers import GroundingDinoForObjectDetection

from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.onnx_export import OUTPUT_NAMES
from autolabel.models.grounding_dino.text import TextFeatures
from autolabel.models.runtime.sessions import GraphRunner, as_numpy, as_tensor

logger = logging.getLogger(__name__)

TorchPrecision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Resized (H, W) -> path of that bucket's exported graph.
BucketExporter = Callable[[tuple[int, int]], Path]
#: Path of an exported graph -> a compiled runner.
RunnerFactory = Callable[[Path], GraphRunner]


class ImageSideRunner(Protocol):
    """The detector's image side (see the module docstring).

    Attributes:
        name: What runs, e.g. "torch-fp32" or "openvino-bf16" (logs and run records).
    """

    name: str

    def __call__(self, pixel_values: Tensor, text: TextFeatures) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) float32 CPU pixel values -> float32 CPU (B, Q, T) logits and (B, Q, 4)
        boxes."""
        ...


class TorchImageSide:
    """The image side in torch, in float32 or under bf16/fp16 autocast (fp16 on CUDA only)."""

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        *,
        device: str = "cpu",
        precision: TorchPrecision = "fp32",
    ) -> None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise InvalidInputError(f"expected precision fp32, bf16 or fp16, got {precision!r}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise InvalidInputError(f"expected a CUDA device for fp16, got {device!r}")
        self.model = model
        self.device = torch.device(device)
        self.precision = precision
        self.name = f"torch-{precision}"

    def __call__(self, pixel_values: Tensor, text: TextFeatures) -> tuple[Tensor, Tensor]:
        """See `ImageSideRunner.__call__`."""
        dtype = _AUTOCAST.get(self.precision)
        autocast = (
            torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        )
        pixels = pixel_values.to(self.device, non_blocking=True)
        with torch.inference_mode(), autocast:
            logits, boxes = image_forward(self.model, pixels, text)
        return logits.float().cpu(), boxes.float().cpu()


class ExportedImageSide:
    """The exported image side, one compiled graph per resized shape (see the module docstring).

    Args:
        exporter: Gives the exported graph of a shape bucket (exporting it the first time).
        compile_graph: Compiles an exported graph, e.g. `functools.partial(openvino_runner,
            precision="bf16")`.
        name: What runs, e.g. "openvino-bf16".
        fallback: Runs shapes beyond `max_buckets`.
        max_buckets: Most shapes exported and kept compiled by this runner.
    """

    def __init__(
        self,
        exporter: BucketExporter,
        compile_graph: RunnerFactory,
        *,
        name: str,
        fallback: ImageSideRunner,
        max_buckets: int = 8,
    ) -> None:
        if max_buckets < 1:
            raise InvalidInputError(f"expected max_buckets >= 1, got {max_buckets}")
        self.exporter = exporter
        self.compile_graph = compile_graph
        self.name = name
        self.fallback = fallback
        self.max_buckets = max_buckets
        self.runners: dict[tuple[int, int], GraphRunner] = {}
        self.fallback_shapes: set[tuple[int, int]] = set()
        self.lock = threading.Lock()

    def runner(self, image_hw: tuple[int, int]) -> GraphRunner | None:
        """The compiled graph of `image_hw`, or None when it runs in the fallback."""
        with self.lock:
            return self._runner(image_hw)

    def _runner(self, image_hw: tuple[int, int]) -> GraphRunner | None:
        if image_hw in self.runners:
            return self.runners[image_hw]
        if len(self.runners) >= self.max_buckets:
            if image_hw not in self.fallback_shapes:
                self.fallback_shapes.add(image_hw)
                logger.info(
                    "%s keeps %d image shapes compiled; %s runs in %s",
                    self.name,
                    self.max_buckets,
                    image_hw,
                    self.fallback.name,
                )
            return None
        self.runners[image_hw] = self.compile_graph(self.exporter(image_hw))
        return self.runners[image_hw]

    def __call__(self, pixel_values: Tensor, text: TextFeatures) -> tuple[Tensor, Tensor]:
        """See `ImageSideRunner.__call__`."""
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise InvalidInputError(
                f"expected (B, 3, H, W) pixel values, got {tuple(pixel_values.shape)}"
            )
        runner = self.runner((int(pixel_values.shape[2]), int(pixel_values.shape[3])))
        if runner is None:
            return self.fallback(pixel_values, text)
        feeds = {
            "pixel_values": as_numpy(pixel_values),
            "text_features": as_numpy(text.features),
            "text_self_attention_mask": as_numpy(text.self_attention_mask, np.bool_),
            "text_position_ids": as_numpy(text.position_ids, np.int64),
        }
        logits, boxes = runner(feeds, OUTPUT_NAMES)
        return as_tensor(logits), as_tensor(boxes)
