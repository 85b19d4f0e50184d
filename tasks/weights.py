"""Loading the models a job names: official weights from the weights folder, or random ones.

Random weights are seeded from the model name, so every worker process builds the same model and
a resumed job labels its remaining images with the same (meaningless) weights: they exist for
smoke runs and tests, and their labels are marked with the version `<name>@random`.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertTokenizer, GroundingDinoForObjectDetection

from autolabel.models.detection import DetectionConfig
from autolabel.models.efficientvit_sam.optimize import prepare_for_inference
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import UnknownModelError
from autolabel.models.grounding_dino.checkpoint import build_model as build_detector_model
from autolabel.models.grounding_dino.checkpoint import load_model as load_detector_model
from autolabel.models.grounding_dino.config import get_spec as get_detector_spec
from autolabel.models.grounding_dino.detector import GroundingDinoDetector, RuntimeOptions
from autolabel.models.grounding_dino.text import load_tokenizer
from autolabel.models.registry import build_model, get_spec
from autolabel.models.weights import WeightFile, sha256_of
from autolabel.storage.weights import ensure_weights
from autolabel.tasks._resources import Runtime

RANDOM = "random"


def _seeded(name: str) -> None:
    torch.manual_seed(zlib.crc32(name.encode()))


def segmenter_version(name: str, rt: Runtime, *, random_weights: bool) -> str:
    """`<name>@<sha256 prefix of the weights>` or `<name>@random`; part of the job's work key."""
    if random_weights:
        return f"{name}@{RANDOM}"
    spec = get_spec(name)
    path = ensure_weights(spec.weights, rt.weights_dir, download=rt.download_weights)
    return f"{name}@{(spec.weights.sha256 or sha256_of(path))[:16]}"


def load_segmenter(name: str, rt: Runtime, *, device: str, random_weights: bool) -> EfficientViTSam:
    """Build EfficientViT-SAM `name` with its official weights (or seeded random ones)."""
    if random_weights:
        _seeded(name)
        model = build_model(name)
    else:
        spec = get_spec(name)
        path = ensure_weights(spec.weights, rt.weights_dir, download=rt.download_weights)
        model = build_model(name, path)
    dtype = "fp16" if device.startswith("cuda") else "fp32"
    return prepare_for_inference(model, device=device, dtype=dtype)


def packaged_tokenizer_dir() -> Path:
    """bert-base-uncased's vocab.txt (sha256 07eced37...), shipped inside the package."""
    import autolabel.models.grounding_dino as package

    return Path(package.__file__).parent / "bert-base-uncased"


def tokenizer_dir(rt: Runtime) -> Path:
    """Folder of the BERT tokenizer files: `<weights>/bert-base-uncased` when the operator put
    them there, else the bert-base-uncased vocabulary shipped with autolabel."""
    configured = rt.weights_dir / "bert-base-uncased"
    return configured if configured.is_dir() else packaged_tokenizer_dir()


def detector_version(name: str, rt: Runtime, *, random_weights: bool) -> str:
    """`<name>@<sha256 prefix>` of the detector weights, or `<name>@random`."""
    if random_weights:
        return f"{name}@{RANDOM}"
    weights = _detector_weights(name)
    path = ensure_weights(weights, rt.weights_dir, download=rt.download_weights)
    return f"{name}@{(weights.sha256 or sha256_of(path))[:16]}"


def _detector_weights(name: str) -> WeightFile:
    spec = get_detector_spec(name)
    if spec.original_weights is None:
        raise UnknownModelError(
            f"expected a detector with released weights, got {name!r} (test configuration); "
            "use it with --random-weights"
        )
    return spec.original_weights


@dataclass(frozen=True, slots=True)
class DetectorParts:
    """A loaded detector network, its tokenizer and how to run it (shared across configs)."""

    model: GroundingDinoForObjectDetection
    tokenizer: BertTokenizer
    options: RuntimeOptions

    def with_config(self, config: DetectionConfig) -> GroundingDinoDetector:
        return GroundingDinoDetector(self.model, self.tokenizer, config, self.options)


def load_detector_parts(
    name: str, rt: Runtime, *, device: str, random_weights: bool
) -> DetectorParts:
    """The detector `name` with its weights (or seeded random ones) and the tokenizer files."""
    spec = get_detector_spec(name)
    options = RuntimeOptions(device=device, min_size=spec.min_size, max_size=spec.max_size)
    tokenizer = load_tokenizer(tokenizer_dir(rt))
    if random_weights:
        _seeded(name)
        model = build_detector_model(spec.build_config())
    else:
        weights = _detector_weights(name)
        path = ensure_weights(weights, rt.weights_dir, download=rt.download_weights)
        model = load_detector_model(spec.build_config(), path, sha256=weights.sha256)
    return DetectorParts(model, tokenizer, options)
