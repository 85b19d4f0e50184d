"""Build GroundingDINO models and load their weights strictly, offline.

Weights come as (a) an original `.pth` (converted on load), (b) a converted `.safetensors` file
written by `save_state_dict`, or (c) a transformers-format directory (`config.json` +
`model.safetensors`, e.g. IDEA-Research/grounding-dino-tiny copied to disk). Every path is local;
nothing is downloaded here. Keys must match exactly (`autolabel.models.checkpoints`' one checker),
except the unused final Swin layernorm, which the original checkpoints do not have. Build a
registered detector with `autolabel.models.registry.create_model`; prove a file loadable without
building its weights with `check_detector_layout` (the registry's `verify_layout`).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection

from autolabel.models.checkpoints import (
    StateDict,
    check_has_data,
    check_load_state_dict_errors,
    check_state_dict,
    load_state_dict_strict,
    read_checkpoint,
    verify_sha256,
)
from autolabel.models.errors import CheckpointError, WeightsUnavailableError
from autolabel.models.grounding_dino.convert import convert_original_state_dict
from autolabel.models.grounding_dino.text import special_token_ids

# Keys the architecture has but checkpoints may lack: the Swin final layernorm is never used
# (GroundingDINO reads stage outputs through hidden_states_norms). The only strict-load tolerance.
SWIN_FINAL_NORM = r"^model\.backbone\.conv_encoder\.model\.swin\.layernorm\."
IGNORE_MISSING = (SWIN_FINAL_NORM,)


def build_detector(config: GroundingDinoConfig) -> GroundingDinoForObjectDetection:
    """Randomly initialised model of `config`, in eval mode, on the CPU."""
    model = GroundingDinoForObjectDetection(config)
    model.train(False)
    return model


def _load_transformers_dir(directory: Path) -> GroundingDinoForObjectDetection:
    loaded = GroundingDinoForObjectDetection.from_pretrained(
        directory, local_files_only=True, output_loading_info=True
    )
    model, info = cast(tuple[GroundingDinoForObjectDetection, dict[str, list[Any]]], loaded)
    check_load_state_dict_errors(
        source=str(directory),
        missing=sorted(info["missing_keys"]),
        unexpected=sorted(info["unexpected_keys"]),
        shapes=[str(item) for item in info.get("mismatched_keys", [])],
        ignore_missing=IGNORE_MISSING,
    )
    model.train(False)
    return model


def _read_safetensors(checkpoint: Path, *, shapes_only: bool) -> StateDict:
    """The tensors of a safetensors file, or (`shapes_only`) meta tensors of their shapes, read
    from the header alone (which safetensors checks covers the whole file)."""
    try:
        if not shapes_only:
            return load_file(str(checkpoint))
        with safe_open(str(checkpoint), framework="pt") as handle:
            keys = handle.keys()  # a safe_open handle is not iterable
            shapes = {key: handle.get_slice(key).get_shape() for key in keys}
    except (OSError, RuntimeError, ValueError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"expected a safetensors file at {checkpoint}: {reason}") from exc
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def read_detector_state(checkpoint: Path, *, mmap: bool = False) -> StateDict:
    """The transformers-layout state dict of a converted `.safetensors` or an original `.pth`
    (`{"model": state dict}` or a bare state dict, converted here).

    Args:
        checkpoint: Local file.
        mmap: Leave the weights on disk: safetensors tensors come back as meta tensors of the
            right shapes, and a zip-format `.pth` is memory-mapped (see `read_checkpoint`).

    Raises:
        WeightsUnavailableError: `checkpoint` is not a file.
        CheckpointError: The file cannot be read, is not a state dict of tensors, or has a key
            the original-layout converter does not know (one line).
    """
    if checkpoint.suffix == ".safetensors":
        return _read_safetensors(checkpoint, shapes_only=mmap)
    loaded = read_checkpoint(checkpoint, mmap=mmap)
    state = loaded.get("model", loaded)
    expected = f"expected a state dict (or {{'model': state dict}}) of tensors in {checkpoint}"
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{expected}, got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{expected}, got non-tensor entries {bad[:10]}")
    check_has_data(state, source=str(checkpoint))
    try:
        return convert_original_state_dict(dict(state))
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {checkpoint} does not convert: {exc}") from exc


def check_detector_layout(config: GroundingDinoConfig, checkpoint: Path) -> int:
    """Prove that `load_detector_weights(config, checkpoint)` would succeed, without building
    weights: the file is read as the loader reads it, but memory-mapped (safetensors: header
    only), and its converted keys and shapes are compared with the architecture built on the
    `meta` device, through the same strict checker and `IGNORE_MISSING` patterns.

    A transformers directory is loaded for real (transformers checks it while loading).

    Returns:
        The number of tensors the file provides (after conversion).

    Raises:
        WeightsUnavailableError: `checkpoint` does not exist.
        CheckpointError: The file cannot be read (one line).
        CheckpointMismatchError: Keys or shapes differ (the first 10 of each kind are named).
    """
    _require(checkpoint)
    if checkpoint.is_dir():
        return len(_load_transformers_dir(checkpoint).state_dict())
    state = read_detector_state(checkpoint, mmap=True)
    with torch.device("meta"):
        model = GroundingDinoForObjectDetection(config)
    check_state_dict(
        model.state_dict(), state, source=str(checkpoint), ignore_missing=IGNORE_MISSING
    )
    return len(state)


def _require(checkpoint: Path) -> None:
    if not checkpoint.exists():
        raise WeightsUnavailableError(
            f"expected detector weights at {checkpoint}, found nothing; see docs/detection.md "
            "for the files and where to put them offline"
        )


def load_detector_weights(
    config: GroundingDinoConfig, checkpoint: Path, *, sha256: str | None = None
) -> GroundingDinoForObjectDetection:
    """Build and strictly load a detector from a local checkpoint (the registry's loader).

    Args:
        config: Architecture (ignored for a transformers directory, which has its config.json).
        checkpoint: Original `.pth`, converted `.safetensors`, or a transformers directory.
        sha256: Pinned digest of a checkpoint file, or None to skip the check.

    Raises:
        WeightsUnavailableError: `checkpoint` does not exist.
        ChecksumMismatchError: The file's digest differs from `sha256`.
        CheckpointMismatchError: Keys or shapes differ from the architecture.
        CheckpointError: The file cannot be read.
    """
    _require(checkpoint)
    if checkpoint.is_dir():
        return _load_transformers_dir(checkpoint)
    if sha256 is not None:
        verify_sha256(checkpoint, sha256)
    state = read_detector_state(checkpoint)
    model = build_detector(config)
    load_state_dict_strict(model, state, source=str(checkpoint), ignore_missing=IGNORE_MISSING)
    return model


def save_state_dict(model: GroundingDinoForObjectDetection, path: Path) -> None:
    """Save the model's weights as safetensors (tied tensors are stored under every name)."""
    state = {name: t.detach().contiguous().clone() for name, t in model.state_dict().items()}
    save_file(state, str(path))


def use_tokenizer_specials(
    model: GroundingDinoForObjectDetection, tokenizer: BertTokenizer
) -> None:
    """Make the model split phrases at the tokenizer's "[CLS]", "[SEP]", "." and "?" ids.

    transformers hard-codes bert-base-uncased's ids (101, 102, 1012, 1029); the original takes them
    from its tokenizer. Setting the buffer keeps both identical for any BERT vocabulary.
    """
    ids = torch.tensor(special_token_ids(tokenizer), dtype=torch.long)
    model.model.special_tokens.copy_(ids.to(model.model.special_tokens.device))
