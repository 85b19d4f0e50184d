"""`GroundingDinoDetector`: the default text-prompted `Detector` (transformers backend).

Per call: the prompt is laid out in chunks of whole phrases within the 256-token limit; text
features are computed once per chunk caption and cached across calls; images are resized with
the original formula and batched only with images of the same resized shape; each (batch, chunk)
runs once in the detector's `ImageSideRunner` (torch float32 by default, or bf16/fp16 autocast,
or the exported graph in ONNX Runtime or OpenVINO: `autolabel.models.grounding_dino.runtime`);
the per-chunk candidates of each image are merged
and finalized by `autolabel.models.detection.finalize_detections`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

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
from autolabel.models.grounding_dino.postprocess import chunk_candidates
from autolabel.models.grounding_dino.preprocess import (
    check_image,
    resized_hw,
    shape_buckets,
    to_pixel_values,
    to_pixel_values_batch,
)
from autolabel.models.grounding_dino.runtime import ImageSideRunner, TorchImageSide
from autolabel.models.grounding_dino.text import (
    TextFeatureCache,
    load_tokenizer,
    phrase_encoder,
    token_layout,
)
from autolabel.models.prompts import PromptChunk, PromptSet, chunk_prompt
from autolabel.models.registry import create_model, get_spec


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceOptions:
    """How the detector prepares and batches its images.

    Attributes:
        device: Torch device string of the network, e.g. "cpu" or "cuda:0".
        max_batch_size: Most images of one shape bucket per forward pass.
        min_size: Short side after resizing.
        max_size: Cap on the long side after resizing.
    """

    device: str = "cpu"
    max_batch_size: int = 4
    min_size: int = 800
    max_size: int = 1333

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise InvalidInputError(f"expected max_batch_size >= 1, got {self.max_batch_size}")


class GroundingDinoDetector:
    """Text-prompted boxes from a transformers `GroundingDinoForObjectDetection`.

    Args:
        model: The network (its text side runs in torch, once per caption).
        tokenizer: bert-base-uncased.
        config: Post-processing.
        options: Device, resizing and batching.
        image_side: Where the image side runs (`autolabel.models.grounding_dino.runtime`);
            default: torch float32 on `options.device`.
    """

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        tokenizer: BertTokenizer,
        config: DetectionConfig | None = None,
        options: InferenceOptions | None = None,
        image_side: ImageSideRunner | None = None,
    ) -> None:
        self.options = options or InferenceOptions()
        self.config = config or DetectionConfig()
        model.train(False)
        self.model = model
        cast(torch.nn.Module, model).to(torch.device(self.options.device))
        self.tokenizer = tokenizer
        use_tokenizer_specials(self.model, tokenizer)
        self.layout = token_layout(tokenizer, model.config.max_text_len)
        self.text_cache = TextFeatureCache(self.model)
        self.image_side = image_side or TorchImageSide(model, device=self.options.device)

    def chunks(self, prompt: PromptSet) -> list[PromptChunk]:
        """The prompt's captions, each within the token limit."""
        return chunk_prompt(prompt, phrase_encoder(self.tokenizer), self.layout)

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
            batch = self._pixel_values([images[i] for i in members], sizes[members[0]])
            for chunk in chunks:
                logits, boxes = self.image_side(batch, self.text_cache.get(chunk.input_ids))
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

    def _pixel_values(
        self, images: Sequence[npt.NDArray[np.uint8]], size_hw: tuple[int, int]
    ) -> torch.Tensor:
        """One bucket's pixel values: resized and normalised on a CUDA device (one transfer of
        the uint8 images), else on the host, where numpy/PIL is the faster path."""
        if torch.device(self.options.device).type == "cuda":
            return to_pixel_values_batch(images, size_hw, self.options.device)
        return torch.stack([to_pixel_values(image, size_hw) for image in images])

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
