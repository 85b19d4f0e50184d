"""SAM's prompt encoder and mask decoder, from Meta's `segment-anything` package.

`segment_anything/__init__.py` imports its predictor and automatic mask generator, which
import torchvision. Only `segment_anything.modeling` is needed here, and it is pure torch.
When torchvision is not installed (the CPU torch wheel has no matching torchvision), the
parent package is registered without running its `__init__`, so `segment_anything.modeling`
imports on its own. With torchvision installed the normal import path is used.
"""

import importlib
import importlib.util
import sys
import types

_PARENT = "segment_anything"


def _register_parent_package() -> None:
    """Put a bare `segment_anything` package in `sys.modules` (its submodules stay loadable)."""
    if _PARENT in sys.modules:
        return
    spec = importlib.util.find_spec(_PARENT)
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(
            "expected the 'segment-anything' package (pip install segment-anything==1.0), "
            "found nothing importable named 'segment_anything'"
        )
    parent = types.ModuleType(_PARENT)
    parent.__path__ = list(spec.submodule_search_locations)
    parent.__spec__ = spec
    parent.__file__ = spec.origin
    sys.modules[_PARENT] = parent


def _import_modeling() -> types.ModuleType:
    if importlib.util.find_spec("torchvision") is None:
        _register_parent_package()
    return importlib.import_module(f"{_PARENT}.modeling")


_modeling = _import_modeling()

MaskDecoder = _modeling.MaskDecoder
PromptEncoder = _modeling.PromptEncoder
TwoWayTransformer = _modeling.TwoWayTransformer
SamLayerNorm2d = importlib.import_module(f"{_PARENT}.modeling.common").LayerNorm2d

__all__ = ["MaskDecoder", "PromptEncoder", "SamLayerNorm2d", "TwoWayTransformer"]
