"""Retrained weights in the registry format `{"model", "spec", "meta"}`, with their sha256."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from autolabel.models.checkpoints import save_checkpoint
from autolabel.models.weight_files import sha256_of


def save_trained_weights(
    model: nn.Module, spec_name: str, meta: Mapping[str, Any], path: Path
) -> str:
    """Save `model`'s weights so that `create_model(spec_name, checkpoint_path=path)` loads them
    strictly.

    Args:
        model: The trained model (unwrapped: not the DDP wrapper).
        spec_name: Registry name, e.g. "efficientvit-sam-l0".
        meta: JSON-like metadata (steps, data, metrics, ...).
        path: Destination file (written atomically; parent folders are created).

    Returns:
        The file's sha256 hex digest.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, path, model_name=spec_name, meta=meta)
    return sha256_of(path)
