"""GroundingDINO text-prompted detector on transformers' `GroundingDinoForObjectDetection`.

Public API (imported lazily: transformers takes seconds to import, and the registry only needs
the specs in `config`):
    load_detector(name, checkpoint, tokenizer_dir, config, options) -> GroundingDinoDetector
    GroundingDinoDetector(model, tokenizer, config, options).detect(images, prompt)
    InferenceOptions: device, precision, backend and batch size of a detector
    DETECTOR_SPECS: registered architectures and their released weights (build them with
        `autolabel.models.registry.create_model`)
    convert_original_state_dict(sd) -> sd: original .pth layout -> transformers layout
    build_detector(config), load_detector_weights(config, checkpoint, sha256=None),
    save_state_dict(model, path)
"""

from typing import TYPE_CHECKING

from autolabel.models.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from autolabel.models.grounding_dino.checkpoint import (
        build_detector,
        load_detector_weights,
        save_state_dict,
    )
    from autolabel.models.grounding_dino.config import (
        DETECTOR_SPECS,
        DetectorSpec,
        swinb_config,
        swint_ogc_config,
        tiny_test_config,
    )
    from autolabel.models.grounding_dino.convert import (
        convert_original_state_dict,
        save_converted,
    )
    from autolabel.models.grounding_dino.detector import (
        GroundingDinoDetector,
        InferenceOptions,
        load_detector,
    )
    from autolabel.models.grounding_dino.text import (
        TextFeatureCache,
        TextFeatures,
        load_tokenizer,
    )

_PACKAGE = "autolabel.models.grounding_dino"
_EXPORTS = {
    "build_detector": f"{_PACKAGE}.checkpoint",
    "load_detector_weights": f"{_PACKAGE}.checkpoint",
    "save_state_dict": f"{_PACKAGE}.checkpoint",
    "DETECTOR_SPECS": f"{_PACKAGE}.config",
    "DetectorSpec": f"{_PACKAGE}.config",
    "swinb_config": f"{_PACKAGE}.config",
    "swint_ogc_config": f"{_PACKAGE}.config",
    "tiny_test_config": f"{_PACKAGE}.config",
    "convert_original_state_dict": f"{_PACKAGE}.convert",
    "save_converted": f"{_PACKAGE}.convert",
    "GroundingDinoDetector": f"{_PACKAGE}.detector",
    "InferenceOptions": f"{_PACKAGE}.detector",
    "load_detector": f"{_PACKAGE}.detector",
    "TextFeatureCache": f"{_PACKAGE}.text",
    "TextFeatures": f"{_PACKAGE}.text",
    "load_tokenizer": f"{_PACKAGE}.text",
}

__all__ = [
    "DETECTOR_SPECS",
    "DetectorSpec",
    "GroundingDinoDetector",
    "InferenceOptions",
    "TextFeatureCache",
    "TextFeatures",
    "build_detector",
    "convert_original_state_dict",
    "load_detector",
    "load_detector_weights",
    "load_tokenizer",
    "save_converted",
    "save_state_dict",
    "swinb_config",
    "swint_ogc_config",
    "tiny_test_config",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)
