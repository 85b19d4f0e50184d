"""EfficientViT-SAM released variants and tiny test variants (the segmenter family).

Released variants are in `SEGMENTER_SPECS`; tiny random-init variants for tests are in
`TEST_SEGMENTER_SPECS`. Both are registered in `autolabel.models.registry`, whose
`create_model` builds them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch

from autolabel.models.checkpoints import (
    StateDict,
    check_checkpoint_layout,
    identity_remap,
    load_checkpoint,
)
from autolabel.models.efficientvit_sam import build
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.weight_files import WeightFile

HF_RESOLVE = "https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main"


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmenterSpec:
    """One segmenter: architecture, preprocessing contract and released weights.

    Attributes:
        name: Kebab-case name, e.g. "efficientvit-sam-l0".
        build: Returns the architecture, randomly initialised, in train mode.
        input_size: Encoder input side S in pixels (512 or 1024); prompts always use 1024.
        weights: The released weights file (filename, URL, pinned sha256 or None); None for
            random-init test variants.
        params_millions: Parameter count from the paper's Table 1, in millions.
        remap: Converts a loaded state dict to this architecture's keys (identity here).
    """

    family: ClassVar[Literal["segmenter"]] = "segmenter"
    name: str
    build: Callable[[], EfficientViTSam]
    input_size: int
    weights: WeightFile | None
    params_millions: float
    remap: Callable[[StateDict], StateDict] = field(default=identity_remap)

    def load(self, path: Path, *, expected_sha256: str | None) -> EfficientViTSam:
        """Build the architecture and load `path` strictly (`load_checkpoint`), in train mode."""
        model = self.build()
        load_checkpoint(
            model, path, expected_sha256=expected_sha256, expected_name=self.name, remap=self.remap
        )
        return model

    def verify_layout(self, path: Path) -> int:
        """Prove `load` would accept `path` (keys and shapes, architecture on the meta device);
        returns the number of tensors the file provides (`check_checkpoint_layout`)."""
        with torch.device("meta"):
            model = self.build()
        return check_checkpoint_layout(model, path, expected_name=self.name, remap=self.remap)


def _released(
    variant: str,
    builder: Callable[[], EfficientViTSam],
    size: int,
    params: float,
    sha256: str | None = None,
) -> SegmenterSpec:
    filename = f"efficientvit_sam_{variant}.pt"
    return SegmenterSpec(
        name=f"efficientvit-sam-{variant}",
        build=builder,
        input_size=size,
        weights=WeightFile(filename=filename, url=f"{HF_RESOLVE}/{filename}", sha256=sha256),
        params_millions=params,
    )


SEGMENTER_SPECS: dict[str, SegmenterSpec] = {
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

TEST_SEGMENTER_SPECS: dict[str, SegmenterSpec] = {
    "efficientvit-sam-test": SegmenterSpec(
        name="efficientvit-sam-test",
        build=build.efficientvit_sam_test,
        input_size=128,
        weights=None,
        params_millions=4.3,
    )
}
