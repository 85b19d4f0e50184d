"""The model registry of every family, and its one factory `create_model` (timm's style).

`MODEL_SPECS` maps each name to its spec: EfficientViT-SAM segmenters
(`autolabel.models.efficientvit_sam.specs`, released and `-test`) and GroundingDINO detectors
(`autolabel.models.grounding_dino.config`). Each spec knows how to build its architecture
(random init) and how to load local weights strictly; `create_model` adds the sha256 rule,
eval mode and the device. `verify_layout` proves a local file loadable (keys and shapes against
the architecture built on the `meta` device) without building its weights, for files whose
release has no pinned digest.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import torch
from torch import nn

from autolabel.models.efficientvit_sam.specs import SEGMENTER_SPECS, TEST_SEGMENTER_SPECS
from autolabel.models.efficientvit_sam.specs import SegmenterSpec as SegmenterSpec
from autolabel.models.errors import UnknownModelError
from autolabel.models.grounding_dino.config import DETECTOR_SPECS
from autolabel.models.grounding_dino.config import DetectorSpec as DetectorSpec

if TYPE_CHECKING:
    from transformers import GroundingDinoForObjectDetection

    from autolabel.models.efficientvit_sam.sam import EfficientViTSam

Family = Literal["segmenter", "detector"]
ModelSpec = SegmenterSpec | DetectorSpec

MODEL_SPECS: dict[str, ModelSpec] = {**SEGMENTER_SPECS, **TEST_SEGMENTER_SPECS, **DETECTOR_SPECS}


def _unknown(name: str, family: Family | None) -> UnknownModelError:
    known = sorted(k for k, s in MODEL_SPECS.items() if family in (None, s.family))
    kind = "model" if family is None else family
    return UnknownModelError(f"unknown {kind} {name!r}; expected one of {known}")


@overload
def get_spec(name: str, *, family: Literal["segmenter"]) -> SegmenterSpec: ...
@overload
def get_spec(name: str, *, family: Literal["detector"]) -> DetectorSpec: ...
@overload
def get_spec(name: str, *, family: None = None) -> ModelSpec: ...
def get_spec(name: str, *, family: Family | None = None) -> ModelSpec:
    """The spec registered as `name`, of `family` when one is given.

    Raises:
        UnknownModelError: `name` is not registered (for that family); the message lists the
            sorted known names (of that family).
    """
    spec = MODEL_SPECS.get(name)
    if spec is None or family not in (None, spec.family):
        raise _unknown(name, family)
    return spec


@overload
def create_model(
    name: str,
    *,
    family: Literal["segmenter"],
    checkpoint_path: Path | str | None = None,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
    verify_sha256: bool = True,
) -> "EfficientViTSam": ...
@overload
def create_model(
    name: str,
    *,
    family: Literal["detector"],
    checkpoint_path: Path | str | None = None,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
    verify_sha256: bool = True,
) -> "GroundingDinoForObjectDetection": ...
@overload
def create_model(
    name: str,
    *,
    family: None = None,
    checkpoint_path: Path | str | None = None,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
    verify_sha256: bool = True,
) -> nn.Module: ...
def create_model(
    name: str,
    *,
    family: Family | None = None,
    checkpoint_path: Path | str | None = None,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
    verify_sha256: bool = True,
) -> nn.Module:
    """Build a registered model, load its weights strictly, and return it in eval mode.

    Steps: look the name up; without a checkpoint, build the random-init architecture; with
    one, check its sha256 (`expected_sha256` if given, else the spec's pinned digest when the
    file has the official filename; retrained weights under another name are not checked
    unless `expected_sha256` is given), `torch.load(weights_only=True)` and load with
    `strict=True` through the spec's loader; then `.eval().to(device)`.

    Args:
        name: A key of `MODEL_SPECS`, e.g. "efficientvit-sam-l0" or "grounding-dino-swint-ogc".
        family: "segmenter" or "detector" to require that family (and type the result).
        checkpoint_path: Local weights, or None for random initialisation. Segmenters take a
            `.pt` (official or retrained `{"model", "spec", "meta"}`); detectors an original
            `.pth`, a converted `.safetensors` or a transformers directory.
        device: Target device.
        expected_sha256: A digest to require for this checkpoint.
        verify_sha256: False skips every digest check.

    Raises:
        UnknownModelError: unknown name (the message lists the known names).
        WeightsUnavailableError, ChecksumMismatchError, CheckpointError,
        CheckpointMismatchError: see `autolabel.models.checkpoints`.
    """
    spec = get_spec(name, family=family)
    if checkpoint_path is None:
        model: nn.Module = spec.build()
    else:
        path = Path(checkpoint_path)
        digest = expected_sha256
        if digest is None and spec.weights is not None and path.name == spec.weights.filename:
            digest = spec.weights.sha256
        model = spec.load(path, expected_sha256=digest if verify_sha256 else None)
    return model.eval().to(device)


def verify_layout(name: str, path: Path | str) -> int:
    """Prove that `create_model(name, checkpoint_path=path)` would load `path`, cheaply.

    The file is read safely and as the loader reads it (`torch.load(weights_only=True)`,
    memory-mapped; a detector's original `.pth` through its converter; a `.safetensors` header),
    and its keys and shapes are compared with the architecture built on the `meta` device by the
    one strict-load checker (`autolabel.models.checkpoints.check_load_state_dict_errors`, with
    the detector's `IGNORE_MISSING` patterns). No weights are built and no digest is checked.

    Args:
        name: A key of `MODEL_SPECS`, e.g. "grounding-dino-swint-ogc".
        path: Local weights file (for detectors also a transformers directory, which is loaded).

    Returns:
        The number of tensors the file provides.

    Raises:
        UnknownModelError: unknown name (the message lists the known names).
        WeightsUnavailableError: `path` does not exist.
        CheckpointError: the file cannot be read safely (a one-line message naming it).
        CheckpointMismatchError: keys or shapes differ (the message names the first ones).
    """
    return get_spec(name).verify_layout(Path(path))
