"""GroundingDINO architectures and released weights (the detector family of the registry).

Architectures are transformers `GroundingDinoConfig`s built in code, offline: SwinT-OGC (the
`GroundingDinoConfig()` defaults, verified key by key against the original config), SwinB, and a
tiny random `-test` configuration for unit tests. The text encoder is always a BERT whose
tokenizer files live in a local directory (see `autolabel.models.grounding_dino.text`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from autolabel.models.weight_files import WeightFile

if TYPE_CHECKING:  # transformers takes many seconds to import: only on use, below
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

_OUT_FEATURES = ["stage2", "stage3", "stage4"]


def _swin(**kwargs: Any) -> "SwinConfig":
    """Swin backbone config returning stages 2-4 (strides 8, 16, 32)."""
    from transformers import SwinConfig

    options: dict[str, Any] = {"out_features": _OUT_FEATURES, **kwargs}
    return SwinConfig(**options)


def swint_ogc_config() -> "GroundingDinoConfig":
    """SwinT-OGC: Swin-T (window 7, embed 96, depths 2-2-6-2), 6+6 layers, 900 queries, BERT."""
    from transformers import BertConfig, GroundingDinoConfig

    return GroundingDinoConfig(
        backbone_config=_swin(
            embed_dim=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
        ),
        text_config=BertConfig(),
    )


def swinb_config() -> "GroundingDinoConfig":
    """SwinB (cogcoor): Swin-B (window 12, embed 128, depths 2-2-18-2, 384 px), BERT-base."""
    from transformers import BertConfig, GroundingDinoConfig

    return GroundingDinoConfig(
        backbone_config=_swin(
            image_size=384,
            embed_dim=128,
            depths=[2, 2, 18, 2],
            num_heads=[4, 8, 16, 32],
            window_size=12,
        ),
        text_config=BertConfig(),
    )


def tiny_test_config() -> "GroundingDinoConfig":
    """A few-MB random configuration with the real structure, for fast tests.

    It keeps the bert-base-uncased vocabulary size (30522) so that the real tokenizer works.
    """
    from transformers import BertConfig, GroundingDinoConfig

    return GroundingDinoConfig(
        backbone_config=_swin(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 2, 4],
            window_size=7,
        ),
        text_config=BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=30,
    )


_HF = "https://huggingface.co"


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSpec:
    """One text-prompted detector, registered in `autolabel.models.registry`.

    Attributes:
        name: Kebab-case name, e.g. "grounding-dino-swint-ogc".
        build_config: Architecture, built offline.
        weights: The released original-layout `.pth` (converted on load), None for test configs.
        transformers_repo: Hub repo with the same weights in transformers layout, if any.
        min_size: Short side after resizing (original `RandomResize([800], max_size=1333)`).
        max_size: Cap on the long side after resizing.
    """

    family: ClassVar[Literal["detector"]] = "detector"
    name: str
    build_config: Callable[[], "GroundingDinoConfig"]
    weights: WeightFile | None = None
    transformers_repo: str | None = None
    min_size: int = 800
    max_size: int = 1333

    def build(self) -> "GroundingDinoForObjectDetection":
        """The architecture, randomly initialised, in eval mode on the CPU."""
        from autolabel.models.grounding_dino.checkpoint import build_detector

        return build_detector(self.build_config())

    def load(self, path: Path, *, expected_sha256: str | None) -> "GroundingDinoForObjectDetection":
        """Build and strictly load local weights: `.pth`, `.safetensors` or a transformers dir."""
        from autolabel.models.grounding_dino.checkpoint import load_detector_weights

        return load_detector_weights(self.build_config(), path, sha256=expected_sha256)

    def verify_layout(self, path: Path) -> int:
        """Prove `load` would accept `path` (keys and shapes, architecture on the meta device);
        returns the number of tensors the file provides (`check_detector_layout`)."""
        from autolabel.models.grounding_dino.checkpoint import check_detector_layout

        return check_detector_layout(self.build_config(), path)


DETECTOR_SPECS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            name="grounding-dino-swint-ogc",
            build_config=swint_ogc_config,
            weights=WeightFile(
                filename="groundingdino_swint_ogc.pth",
                url=f"{_HF}/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swint_ogc.pth",
            ),
            transformers_repo="IDEA-Research/grounding-dino-tiny",
        ),
        DetectorSpec(
            name="grounding-dino-swinb-cogcoor",
            build_config=swinb_config,
            weights=WeightFile(
                filename="groundingdino_swinb_cogcoor.pth",
                url=f"{_HF}/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swinb_cogcoor.pth",
            ),
            transformers_repo="IDEA-Research/grounding-dino-base",
        ),
        DetectorSpec(
            name="grounding-dino-test",
            build_config=tiny_test_config,
            min_size=128,
            max_size=192,
        ),
    )
}
