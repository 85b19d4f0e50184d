"""`GroundingDinoDetector`: the default text-prompted `Detector` (transformers backend).

Per call: the prompt is laid out in chunks of whole phrases within the 256-token limit; text
features are computed once per chunk caption and cached across calls; images are resized with
the original formula and batched only with images of the same resized shape; each (batch, chunk)
runs once, optionally under bf16/fp16 autocast; the per-chunk candidates of each image are merged
and finalized by `autolabel.models.detection.finalize_detections`.
"""

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import torch
from transformers import BertTokenizer, GroundingDinoForObjectDetection

from autolabel.models.detection import (
    Candidates,
    DetectionConfig,
    Detections,
    finalize_detections,
)
from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.checkpoint import use_tokenizer_specials
from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.onnx_export import OnnxBucketSessions
from autolabel.models.grounding_dino.postprocess import chunk_candidates
from autolabel.models.grounding_dino.preprocess import (
    check_image,
    resized_hw,
    shape_buckets,
    to_pixel_values,
)
from autolabel.models.grounding_dino.text import (
    TextFeatureCache,
    TextFeatures,
    load_tokenizer,
    phrase_encoder,
    token_layout,
)
from autolabel.models.prompts import PromptChunk, PromptSet, chunk_prompt
from autolabel.models.registry import create_model, get_spec

Precision = Literal["float32", "bfloat16", "float16"]
_AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceOptions:
    """How the detector runs.

    Attributes:
        device: Torch device string, e.g. "cpu" or "cuda:0".
        precision: "float32", or autocast "bfloat16" / "float16" (fp16 on CUDA only).
        backend: "torch", or "onnxruntime": the image side exported per shape bucket into
            `onnx_dir` on first use (float32, CPU provider; batches padded to max_batch_size).
        onnx_dir: Directory for the exported buckets (required for "onnxruntime").
        max_batch_size: Most images of one shape bucket per forward pass.
        min_size: Short side after resizing.
        max_size: Cap on the long side after resizing.
    """

    device: str = "cpu"
    precision: Precision = "float32"
    backend: Literal["torch", "onnxruntime"] = "torch"
    onnx_dir: Path | None = None
    max_batch_size: int = 4
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if self.precision not in ("float32", "bfloat16", "float16"):
            raise InvalidInputError(
                f"expected precision float32, bfloat16 or float16, got {self.precision!r}"
            )
        if self.precision == "float16" and not self.device.startswith("cuda"):
            raise InvalidInputError(f"expected a CUDA device for float16, got {self.device!r}")
        if self.backend == "onnxruntime" and (
            self.onnx_dir is None or self.precision != "float32" or self.device != "cpu"
        ):
            raise InvalidInputError(
                "expected onnx_dir, float32 and device 'cpu' for the onnxruntime backend, got "
                f"{self.onnx_dir}, {self.precision}, {self.device!r}"
            )
        if self.backend not in ("torch", "onnxruntime"):
            raise InvalidInputError(f"expected backend torch or onnxruntime, got {self.backend!r}")
        if self.max_batch_size < 1:
            raise InvalidInputError(f"expected max_batch_size >= 1, got {self.max_batch_size}")


class GroundingDinoDetector:
    """Text-prompted boxes from a transformers `GroundingDinoForObjectDetection`."""

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        tokenizer: BertTokenizer,
        config: DetectionConfig | None = None,
        options: InferenceOptions | None = None,
    ) -> None:
        self.options = options or InferenceOptions()
        device = torch.device(self.options.device)
        if (
            self.options.precision == "bfloat16"
            and device.type == "cuda"
            and not torch.cuda.is_bf16_supported()
        ):
            raise InvalidInputError(f"expected a device with bfloat16 support, got {device}")
        self.config = config or DetectionConfig()
        model.train(False)
        self.model = model
        cast(torch.nn.Module, model).to(torch.device(self.options.device))
        self.tokenizer = tokenizer
        use_tokenizer_specials(self.model, tokenizer)
        self.layout = token_layout(tokenizer, model.config.max_text_len)
        self.text_cache = TextFeatureCache(self.model)
        self.onnx: OnnxBucketSessions | None = None
        if self.options.backend == "onnxruntime" and self.options.onnx_dir is not None:
            self.onnx = OnnxBucketSessions(self.model, self.options.onnx_dir)

    def chunks(self, prompt: PromptSet) -> list[PromptChunk]:
        """The prompt's captions, each within the token limit."""
        return chunk_prompt(prompt, phrase_encoder(self.tokenizer), self.layout)

    def _forward(
        self, pixel_values: torch.Tensor, chunk: PromptChunk
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.text_cache.get(chunk.input_ids)
        if self.onnx is not None:
            return self._forward_onnx(pixel_values, text)
        device = torch.device(self.options.device)
        dtype = _AUTOCAST.get(self.options.precision)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        with torch.inference_mode(), autocast:
            logits, boxes = image_forward(self.model, pixel_values.to(device), text)
        return logits.float().cpu(), boxes.float().cpu()

    def _forward_onnx(
        self, pixel_values: torch.Tensor, text: TextFeatures
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad the batch to max_batch_size (one export per bucket) and run ONNX Runtime."""
        if self.onnx is None:
            raise InvalidInputError("expected the onnxruntime backend to be configured")
        count = pixel_values.shape[0]
        padding = pixel_values[-1:].expand(self.options.max_batch_size - count, -1, -1, -1)
        padded = torch.cat([pixel_values, padding]).numpy()
        logits, boxes = self.onnx(padded, text)
        return torch.from_numpy(logits[:count]), torch.from_numpy(boxes[:count])

    def detect(
        self, images: Sequence[npt.NDArray[np.uint8]], prompt: PromptSet
    ) -> list[Detections]:
        """Detect the prompt's categories in each image.

        Args:
            images: Each (H, W, 3) uint8 RGB; sizes may differ.
            prompt: Categories and their phrases.

        Returns:
            One `Detections` per image, boxes in original-image pixel xyxy.
        """
        for image in images:
            check_image(image)
        chunks = self.chunks(prompt)
        self.config.thresholds(prompt)  # reject unknown per-category thresholds before running
        min_score = self._min_score(prompt)
        image_hws = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        sizes = [resized_hw(hw, self.options.min_size, self.options.max_size) for hw in image_hws]
        parts: list[list[Candidates]] = [[] for _ in images]
        for members in shape_buckets(sizes, self.options.max_batch_size):
            batch = torch.stack([to_pixel_values(images[i], sizes[i]) for i in members])
            for chunk in chunks:
                logits, boxes = self._forward(batch, chunk)
                for row, index in enumerate(members):
                    parts[index].append(
                        chunk_candidates(
                            logits[row], boxes[row], chunk, image_hws[index], min_score
                        )
                    )
        return [
            finalize_detections(Candidates.concat(p), prompt, self.config, hw)
            for p, hw in zip(parts, image_hws, strict=True)
        ]

    def _min_score(self, prompt: PromptSet) -> float:
        box, text = self.config.thresholds(prompt)
        return float(min(box.min(), text.min()))


def load_detector(
    name: str,
    checkpoint: Path,
    tokenizer_dir: Path,
    config: DetectionConfig | None = None,
    options: InferenceOptions | None = None,
) -> GroundingDinoDetector:
    """Build the registered detector `name` from local files only.

    Args:
        name: A key of `DETECTOR_SPECS`, e.g. "grounding-dino-swint-ogc".
        checkpoint: Original `.pth`, converted `.safetensors` or transformers directory.
        tokenizer_dir: Directory with bert-base-uncased `tokenizer.json` or `vocab.txt`.
        config: Post-processing; defaults to `DetectionConfig()`.
        options: How it runs; its sizes default to the spec's preprocessing contract.
    """
    spec = get_spec(name, family="detector")
    model = create_model(name, family="detector", checkpoint_path=checkpoint)
    options = options or InferenceOptions(min_size=spec.min_size, max_size=spec.max_size)
    return GroundingDinoDetector(model, load_tokenizer(tokenizer_dir), config, options)
