"""GroundingDINO architectures and released weights (the registry of text-prompted detectors).

Architectures are transformers `GroundingDinoConfig`s built in code, offline: SwinT-OGC (the
`GroundingDinoConfig()` defaults, verified key by key against the original config), SwinB, and a
tiny random `-test` configuration for unit tests. The text encoder is always a BERT whose
tokenizer files live in a local directory (see `autolabel.models.grounding_dino.text`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import BertConfig, GroundingDinoConfig, SwinConfig

from autolabel.models.errors import UnknownModelError
from autolabel.models.weights import WeightFile

_OUT_FEATURES = ["stage2", "stage3", "stage4"]


def _swin(**kwargs: Any) -> SwinConfig:
    """Swin backbone config returning stages 2-4 (strides 8, 16, 32)."""
    options: dict[str, Any] = {"out_features": _OUT_FEATURES, **kwargs}
    return SwinConfig(**options)


def swint_ogc_config() -> GroundingDinoConfig:
    """SwinT-OGC: Swin-T (window 7, embed 96, depths 2-2-6-2), 6+6 layers, 900 queries, BERT."""
    return GroundingDinoConfig(
        backbone_config=_swin(
            embed_dim=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
        ),
        text_config=BertConfig(),
    )


def swinb_config() -> GroundingDinoConfig:
    """SwinB (cogcoor): Swin-B (window 12, embed 128, depths 2-2-18-2, 384 px), BERT-base."""
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


def tiny_test_config() -> GroundingDinoConfig:
    """A few-MB random configuration with the real structure, for fast tests.

    It keeps the bert-base-uncased vocabulary size (30522) so that the real tokenizer works.
    """
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
    """One text-prompted detector.

    Attributes:
        name: Kebab-case name, e.g. "grounding-dino-swint-ogc".
        build_config: Architecture, built offline.
        original_weights: The original-layout `.pth` (converted on load), if released.
        transformers_repo: Hub repo with the same weights in transformers layout, if any.
        min_size: Short side after resizing (original `RandomResize([800], max_size=1333)`).
        max_size: Cap on the long side after resizing.
    """

    name: str
    build_config: Callable[[], GroundingDinoConfig]
    original_weights: WeightFile | None = None
    transformers_repo: str | None = None
    min_size: int = 800
    max_size: int = 1333


DETECTOR_SPECS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            name="grounding-dino-swint-ogc",
            build_config=swint_ogc_config,
            original_weights=WeightFile(
                filename="groundingdino_swint_ogc.pth",
                url=f"{_HF}/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swint_ogc.pth",
            ),
            transformers_repo="IDEA-Research/grounding-dino-tiny",
        ),
        DetectorSpec(
            name="grounding-dino-swinb-cogcoor",
            build_config=swinb_config,
            original_weights=WeightFile(
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


def get_spec(name: str) -> DetectorSpec:
    """The registered detector `name`.

    Raises:
        UnknownModelError: `name` is not registered; the message lists the known names.
    """
    try:
        return DETECTOR_SPECS[name]
    except KeyError as exc:
        raise UnknownModelError(
            f"expected a detector name in {sorted(DETECTOR_SPECS)}, got {name!r}"
        ) from exc
