"""GroundingDINO text-prompted detector on transformers' `GroundingDinoForObjectDetection`.

Public API:
    load_detector(name, checkpoint, tokenizer_dir, config, options) -> GroundingDinoDetector
    GroundingDinoDetector(model, tokenizer, config, options).detect(images, prompt)
    DETECTOR_SPECS / get_spec(name): registered architectures and their released weights
    convert_original_state_dict(sd) -> sd: original .pth layout -> transformers layout
    load_model(config, checkpoint, sha256=None), save_state_dict(model, path)
"""

from autolabel.models.grounding_dino.checkpoint import (
    build_model,
    load_model,
    load_state_dict_strict,
    save_state_dict,
)
from autolabel.models.grounding_dino.config import (
    DETECTOR_SPECS,
    DetectorSpec,
    get_spec,
    swinb_config,
    swint_ogc_config,
    tiny_test_config,
)
from autolabel.models.grounding_dino.convert import convert_original_state_dict, save_converted
from autolabel.models.grounding_dino.detector import (
    GroundingDinoDetector,
    RuntimeOptions,
    load_detector,
)
from autolabel.models.grounding_dino.text import TextFeatureCache, TextFeatures, load_tokenizer

__all__ = [
    "DETECTOR_SPECS",
    "DetectorSpec",
    "GroundingDinoDetector",
    "RuntimeOptions",
    "TextFeatureCache",
    "TextFeatures",
    "build_model",
    "convert_original_state_dict",
    "get_spec",
    "load_detector",
    "load_model",
    "load_state_dict_strict",
    "load_tokenizer",
    "save_converted",
    "save_state_dict",
    "swinb_config",
    "swint_ogc_config",
    "tiny_test_config",
]
