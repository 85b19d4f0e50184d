"""Optional backend: the original implementation (`groundingdino-py`), imported lazily.

`groundingdino-py` 0.4.0 imports torchvision and needs transformers 4.x, so it cannot live in the
main environment (torch 2.13 CPU, transformers 5.24). It runs in a separate environment with
torch 2.14.1 + torchvision 0.29.1 + transformers 4.57.6 (see docs/detection.md). The default
backend (`GroundingDinoDetector`) reproduces it on converted weights.
"""

from pathlib import Path
from types import ModuleType
from typing import Any, cast

from autolabel.models.errors import ModelError

REQUIREMENTS = "groundingdino-py==0.4.0 torch==2.14.1 torchvision==0.29.1 transformers==4.57.6"


class OriginalBackendUnavailableError(ModelError, ImportError):
    """`groundingdino-py` is not importable in this environment."""


def import_original() -> ModuleType:
    """Import `groundingdino.util.inference` or explain which environment it needs.

    Raises:
        OriginalBackendUnavailableError: The package (or its torchvision / transformers 4.x
            dependencies) cannot be imported here.
    """
    try:
        from groundingdino.util import inference
    except (ImportError, AttributeError) as exc:
        raise OriginalBackendUnavailableError(
            "expected groundingdino-py to be importable, got "
            f"{type(exc).__name__}: {exc}. It needs its own environment: pip install "
            f"{REQUIREMENTS} (it imports torchvision and breaks with transformers 5.x); the "
            "default backend autolabel.models.grounding_dino.GroundingDinoDetector runs the "
            "same weights after conversion"
        ) from exc
    return cast(ModuleType, inference)


def load_original_model(config_file: Path, checkpoint: Path, text_encoder_dir: Path) -> Any:
    """Build the original model from its config file with a LOCAL BERT directory.

    Args:
        config_file: e.g. groundingdino/config/GroundingDINO_SwinT_OGC.py.
        checkpoint: groundingdino_swint_ogc.pth.
        text_encoder_dir: Directory with bert-base-uncased config, weights and tokenizer files;
            without it the original asks the hub for "bert-base-uncased".
    """
    import_original()
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig

    from autolabel.models.grounding_dino.convert import load_original_checkpoint

    args = SLConfig.fromfile(str(config_file))
    args.device = "cpu"
    args.text_encoder_type = str(text_encoder_dir)
    model = build_model(args)
    state = {k.removeprefix("module."): v for k, v in load_original_checkpoint(checkpoint).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()
