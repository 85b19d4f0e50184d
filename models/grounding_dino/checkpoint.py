"""Build GroundingDINO models and load their weights strictly, offline.

Weights come as (a) an original `.pth` (converted on load), (b) a converted `.safetensors` file
written by `save_state_dict`, or (c) a transformers-format directory (`config.json` +
`model.safetensors`, e.g. IDEA-Research/grounding-dino-tiny copied to disk). Every path is local;
nothing is downloaded here. Keys must match exactly, except the unused final Swin layernorm, which
the original checkpoints do not have.
"""

import re
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection

from autolabel.models.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ChecksumMismatchError,
    WeightsUnavailableError,
)
from autolabel.models.grounding_dino.convert import (
    StateDict,
    convert_original_state_dict,
    load_original_checkpoint,
)
from autolabel.models.grounding_dino.text import special_token_ids
from autolabel.models.weights import sha256_of

# Keys the architecture has but checkpoints may lack: the Swin final layernorm is never used
# (GroundingDINO reads stage outputs through hidden_states_norms).
IGNORED_MISSING = (re.compile(r"^model\.backbone\.conv_encoder\.model\.swin\.layernorm\."),)


def build_model(config: GroundingDinoConfig) -> GroundingDinoForObjectDetection:
    """Randomly initialised model of `config`, in eval mode, on the CPU."""
    model = GroundingDinoForObjectDetection(config)
    model.train(False)
    return model


def _mismatch(what: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> None:
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"expected {what} to match the architecture exactly; missing {len(missing)} "
            f"{missing[:10]}, unexpected {len(unexpected)} {unexpected[:10]}, "
            f"wrong shape {len(shapes)} {shapes[:10]}"
        )


def load_state_dict_strict(model: torch.nn.Module, state_dict: StateDict, what: str) -> None:
    """Copy `state_dict` into `model`; any missing, unexpected or misshaped key is an error.

    Raises:
        CheckpointMismatchError: Names the first 10 keys of each kind.
    """
    own = model.state_dict()
    check_state_dict(own, state_dict, what)
    # Only keys matched by IGNORED_MISSING can be absent here: they keep the model's own values.
    complete = {**{k: v for k, v in own.items() if k not in state_dict}, **state_dict}
    model.load_state_dict(complete, strict=True)


def check_state_dict(expected: StateDict, state_dict: StateDict, what: str) -> None:
    """Raise CheckpointMismatchError unless `state_dict` has exactly the keys and shapes of
    `expected` (a model's state dict; tensors may be on the meta device), up to
    `IGNORED_MISSING`."""
    missing = [
        k for k in expected if k not in state_dict and not any(p.search(k) for p in IGNORED_MISSING)
    ]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    _mismatch(what, missing, unexpected, shapes)


def check_sha256(path: Path, expected: str | None) -> None:
    """Raise ChecksumMismatchError when `expected` is given and differs from the file's."""
    if expected is not None and (actual := sha256_of(path)) != expected:
        raise ChecksumMismatchError(f"expected sha256 {expected} for {path}, got {actual}")


def _load_transformers_dir(directory: Path) -> GroundingDinoForObjectDetection:
    loaded = GroundingDinoForObjectDetection.from_pretrained(
        directory, local_files_only=True, output_loading_info=True
    )
    model, info = cast(tuple[GroundingDinoForObjectDetection, dict[str, list[Any]]], loaded)
    missing = [k for k in info["missing_keys"] if not any(p.search(k) for p in IGNORED_MISSING)]
    shapes = [str(item) for item in info.get("mismatched_keys", [])]
    _mismatch(str(directory), sorted(missing), sorted(info["unexpected_keys"]), shapes)
    model.train(False)
    return model


def load_model(
    config: GroundingDinoConfig, checkpoint: Path, *, sha256: str | None = None
) -> GroundingDinoForObjectDetection:
    """Build and strictly load a detector from a local checkpoint.

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
    if not checkpoint.exists():
        raise WeightsUnavailableError(
            f"expected detector weights at {checkpoint}, found nothing; see docs/detection.md "
            "for the files and where to put them offline"
        )
    if checkpoint.is_dir():
        return _load_transformers_dir(checkpoint)
    check_sha256(checkpoint, sha256)
    if checkpoint.suffix == ".safetensors":
        try:
            state = load_file(str(checkpoint))
        except (OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"expected a safetensors file at {checkpoint}: {exc}") from exc
    else:
        state = convert_original_state_dict(load_original_checkpoint(checkpoint))
    model = build_model(config)
    load_state_dict_strict(model, state, str(checkpoint))
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
