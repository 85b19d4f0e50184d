"""Build GroundingDINO models and load their weights strictly, offline.

Weights come as (a) an original `.pth` (converted on load), (b) a converted `.safetensors` file
written by `save_state_dict`, or (c) a transformers-format directory (`config.json` +
`model.safetensors`, e.g. IDEA-Research/grounding-dino-tiny copied to disk). Every path is local;
nothing is downloaded here. Keys must match exactly (`autolabel.models.checkpoints`' one checker),
except the unused final Swin layernorm, which the original checkpoints do not have. Build a
registered detector with `autolabel.models.registry.create_model`.
"""

from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from transformers import BertTokenizer, GroundingDinoConfig, GroundingDinoForObjectDetection

from autolabel.models.checkpoints import (
    check_load_state_dict_errors,
    load_state_dict_strict,
    verify_sha256,
)
from autolabel.models.errors import CheckpointError, WeightsUnavailableError
from autolabel.models.grounding_dino.convert import (
    convert_original_state_dict,
    load_original_checkpoint,
)
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
    if not checkpoint.exists():
        raise WeightsUnavailableError(
            f"expected detector weights at {checkpoint}, found nothing; see docs/detection.md "
            "for the files and where to put them offline"
        )
    if checkpoint.is_dir():
        return _load_transformers_dir(checkpoint)
    if sha256 is not None:
        verify_sha256(checkpoint, sha256)
    if checkpoint.suffix == ".safetensors":
        try:
            state = load_file(str(checkpoint))
        except (OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"expected a safetensors file at {checkpoint}: {exc}") from exc
    else:
        state = convert_original_state_dict(load_original_checkpoint(checkpoint))
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
