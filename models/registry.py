"""The EfficientViT-SAM model registry: one explicit dict of specs and one factory.

Released variants are in `MODEL_SPECS`; tiny random-init variants for tests are in
`TEST_MODEL_SPECS`. `build_model` accepts names from both.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autolabel.models.checkpoints import StateDict, identity_remap, load_checkpoint
from autolabel.models.efficientvit_sam import build
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import UnknownModelError
from autolabel.models.weights import WeightFile

HF_RESOLVE = "https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One model: architecture, preprocessing contract and released weights.

    Attributes:
        name: Kebab-case name, e.g. "efficientvit-sam-l0".
        build: Returns the architecture, randomly initialised, in train mode.
        input_size: Encoder input side S in pixels (512 or 1024); prompts always use 1024.
        weights: The released weights file (filename, URL, pinned sha256 or None).
        params_millions: Parameter count from the paper's Table 1, in millions.
        remap: Converts a loaded state dict to this architecture's keys (identity here).
    """

    name: str
    build: Callable[[], EfficientViTSam]
    input_size: int
    weights: WeightFile
    params_millions: float
    remap: Callable[[StateDict], StateDict] = field(default=identity_remap)


def _released(
    variant: str,
    builder: Callable[[], EfficientViTSam],
    size: int,
    params: float,
    sha256: str | None = None,
) -> ModelSpec:
    filename = f"efficientvit_sam_{variant}.pt"
    return ModelSpec(
        name=f"efficientvit-sam-{variant}",
        build=builder,
        input_size=size,
        weights=WeightFile(filename=filename, url=f"{HF_RESOLVE}/{filename}", sha256=sha256),
        params_millions=params,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _released(
            "l0",
            build.efficientvit_sam_l0,
            512,
            34.8,
            "c4f994b01a16d48bcf2fbbb089448cfbf58fae5811edfa8113c953b8b8cc64b8",
        ),
        _released("l1", build.efficientvit_sam_l1, 512, 47.7),
        _released("l2", build.efficientvit_sam_l2, 512, 61.3),
        _released("xl0", build.efficientvit_sam_xl0, 1024, 117.0),
        _released("xl1", build.efficientvit_sam_xl1, 1024, 203.3),
    )
}

TEST_MODEL_SPECS: dict[str, ModelSpec] = {
    "efficientvit-sam-test": ModelSpec(
        name="efficientvit-sam-test",
        build=build.efficientvit_sam_test,
        input_size=128,
        weights=WeightFile(filename="efficientvit_sam_test.pt", url="", sha256=None),
        params_millions=4.3,
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of a released or test model; unknown names raise `UnknownModelError`."""
    spec = MODEL_SPECS.get(name) or TEST_MODEL_SPECS.get(name)
    if spec is None:
        known = sorted([*MODEL_SPECS, *TEST_MODEL_SPECS])
        raise UnknownModelError(f"unknown model {name!r}; expected one of {known}")
    return spec


def build_model(
    name: str,
    checkpoint: Path | str | None = None,
    device: torch.device | str = "cpu",
    *,
    verify_sha256: bool = True,
    expected_sha256: str | None = None,
) -> EfficientViTSam:
    """Build a model by name, load weights strictly, and return it in eval mode on `device`.

    Args:
        name: A key of `MODEL_SPECS` or `TEST_MODEL_SPECS`.
        checkpoint: Local checkpoint path, or None for random initialisation.
        device: Target device.
        verify_sha256: Check the file's sha256 when one is known: `expected_sha256` if given,
            else the spec's pinned digest when the file has the official filename (retrained
            weights under another name are not checked unless `expected_sha256` is given).
        expected_sha256: A digest to require for this checkpoint.

    Raises:
        UnknownModelError: unknown name (the message lists the known names).
        WeightsUnavailableError, ChecksumMismatchError, CheckpointError,
        CheckpointMismatchError: see `autolabel.models.checkpoints.load_checkpoint`.
    """
    spec = get_spec(name)
    model = spec.build()
    if checkpoint is not None:
        path = Path(checkpoint)
        digest = expected_sha256
        if digest is None and path.name == spec.weights.filename:
            digest = spec.weights.sha256
        load_checkpoint(
            model,
            path,
            expected_sha256=digest if verify_sha256 else None,
            expected_name=spec.name,
            remap=spec.remap,
        )
    return model.eval().to(device)
