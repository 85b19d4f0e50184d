"""Small GroundingDINO checkpoints in the ORIGINAL `.pth` layout, for loader and layout tests.

The original key names come from the recorded key list of the real original implementation
(tests/fixtures/grounding_dino/keys_small.json, a Swin-T model). For an architecture such as
`tiny_test_config()` we keep the original keys whose converted names it has (fewer Swin blocks and
BERT layers), with the shapes it expects; a fused q/k/v tensor gets three times the rows of one
split part. `convert_original_state_dict` maps the result onto every tensor of the architecture
but the unused Swin final layernorm, as it does for a released checkpoint.
"""

import json
from pathlib import Path

import torch
from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

from autolabel.models.grounding_dino.convert import rename_original_key

KEYS_FILE = Path(__file__).parents[2] / "fixtures" / "grounding_dino" / "keys_small.json"
_DROPPED = ("relative_position_index", "attn_mask", "bert.pooler.", "position_ids")


def _split_names(renamed: str) -> list[str]:
    """The q/k/v names a fused `...QKV(q,k,v)...` name converts to, else `[renamed]`."""
    start = renamed.find("QKV(")
    if start < 0:
        return [renamed]
    end = renamed.index(")", start)
    parts = renamed[start + 4 : end].split(",")
    return [renamed[:start] + part + renamed[end + 1 :] for part in parts]


def original_state_dict(config: GroundingDinoConfig, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under original GroundingDINO names, shaped for `config`'s architecture."""
    with torch.device("meta"):
        target = GroundingDinoForObjectDetection(config).state_dict()
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, _, _ in json.loads(KEYS_FILE.read_text()):
        if any(marker in name for marker in _DROPPED):
            continue
        names = _split_names(rename_original_key(name))
        if not all(n in target for n in names):
            continue  # a block or layer this smaller architecture does not have
        first = target[names[0]].shape
        shape = (len(names) * first[0], *first[1:]) if len(names) > 1 else tuple(first)
        state[name] = torch.randn(shape, generator=generator) * 0.02
    return state


def write_original_checkpoint(config: GroundingDinoConfig, path: Path, *, seed: int = 0) -> Path:
    """Save `{"model": original_state_dict(config)}` with `module.` prefixes, as released."""
    state = original_state_dict(config, seed=seed)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, path)
    return path
