"""Convert original GroundingDINO checkpoints (groundingdino_swint_ogc.pth, ...) to transformers.

`convert_original_state_dict` is pure: it maps names of the original implementation
(IDEA-Research/GroundingDINO) to `GroundingDinoForObjectDetection` names of transformers 5.x,
splits the fused q/k/v projections (Swin `attn.qkv`, `nn.MultiheadAttention.in_proj_*`) into
separate query/key/value tensors, and drops buffers transformers recomputes (Swin
`relative_position_index`, `attn_mask`), the unused BERT pooler and `position_ids`. Parity against
the original implementation on the same weights is tested in
`tests/unit/models/test_grounding_dino_parity.py`.
"""

import re
from pathlib import Path

import torch

from autolabel.models.errors import CheckpointError

StateDict = dict[str, torch.Tensor]

_SWIN = "model.backbone.conv_encoder.model.swin."
_DROP = re.compile(
    r"(relative_position_index|attn_mask|^bert\.pooler\.|^bert\.embeddings\.position_ids)"
)

# (pattern, replacement) applied in order, first match wins; names are "module."-stripped.
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^backbone\.0\.patch_embed\.proj\.", _SWIN + "embeddings.patch_embeddings.projection."),
    (r"^backbone\.0\.patch_embed\.norm\.", _SWIN + "embeddings.norm."),
    (r"^backbone\.0\.norm(\d)\.", "BACKBONE_NORM_\\1."),
    (r"^backbone\.0\.layers\.(\d+)\.downsample\.", _SWIN + "encoder.layers.\\1.downsample."),
    (
        r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.",
        _SWIN + "encoder.layers.\\1.blocks.\\2.SWIN.",
    ),
    (r"^transformer\.level_embed$", "model.level_embed"),
    (r"^transformer\.encoder\.layers\.(\d+)\.", "model.encoder.layers.\\1.deformable_layer.DEF."),
    (
        r"^transformer\.encoder\.text_layers\.(\d+)\.",
        "model.encoder.layers.\\1.text_enhancer_layer.TXT.",
    ),
    (
        r"^transformer\.encoder\.fusion_layers\.(\d+)\.",
        "model.encoder.layers.\\1.fusion_layer.FUS.",
    ),
    (r"^transformer\.decoder\.layers\.(\d+)\.", "model.decoder.layers.\\1.DEC."),
    (r"^transformer\.decoder\.norm\.", "model.decoder.layer_norm."),
    (r"^transformer\.decoder\.ref_point_head\.", "model.decoder.reference_points_head."),
    (r"^transformer\.decoder\.bbox_embed\.", "model.decoder.bbox_embed."),
    (r"^transformer\.tgt_embed\.", "model.query_position_embeddings."),
    (r"^transformer\.enc_output\.", "model.enc_output."),
    (r"^transformer\.enc_output_norm\.", "model.enc_output_norm."),
    (r"^transformer\.enc_out_bbox_embed\.", "model.encoder_output_bbox_embed."),
    (r"^bert\.", "model.text_backbone."),
    (r"^feat_map\.", "model.text_projection."),
    (r"^input_proj\.", "model.input_proj_vision."),
    (r"^bbox_embed\.", "bbox_embed."),
)

# Renames inside one layer, keyed by the marker the prefix rename left in the name.
_INNER: dict[str, tuple[tuple[str, str], ...]] = {
    "SWIN": (
        (r"^norm1\.", "layernorm_before."),
        (r"^norm2\.", "layernorm_after."),
        (r"^attn\.qkv\.", "attention.QKV(q_proj,k_proj,v_proj)."),
        (r"^attn\.proj\.", "attention.o_proj."),
        (
            r"^attn\.relative_position_bias_table$",
            "attention.relative_position_bias.relative_position_bias_table",
        ),
        (r"^mlp\.", "mlp."),
    ),
    "DEF": (
        (r"^self_attn\.", "self_attn."),
        (r"^norm1\.", "self_attn_layer_norm."),
        (r"^norm2\.", "final_layer_norm."),
        (r"^linear1\.", "fc1."),
        (r"^linear2\.", "fc2."),
    ),
    "TXT": (
        (r"^self_attn\.in_proj_(weight|bias)$", "self_attn.QKV(query,key,value).\\1"),
        (r"^self_attn\.out_proj\.", "self_attn.out_proj."),
        (r"^norm1\.", "layer_norm_before."),
        (r"^norm2\.", "layer_norm_after."),
        (r"^linear1\.", "fc1."),
        (r"^linear2\.", "fc2."),
    ),
    "FUS": (
        (r"^gamma_v$", "vision_param"),
        (r"^gamma_l$", "text_param"),
        (r"^layer_norm_v\.", "layer_norm_vision."),
        (r"^layer_norm_l\.", "layer_norm_text."),
        (r"^attn\.(values_|out_)?v_proj\.", "attn.\\1vision_proj."),
        (r"^attn\.(values_|out_)?l_proj\.", "attn.\\1text_proj."),
    ),
    "DEC": (
        (r"^cross_attn\.", "encoder_attn."),
        (r"^norm1\.", "encoder_attn_layer_norm."),
        (r"^ca_text\.in_proj_(weight|bias)$", "encoder_attn_text.QKV(query,key,value).\\1"),
        (r"^ca_text\.out_proj\.", "encoder_attn_text.out_proj."),
        (r"^catext_norm\.", "encoder_attn_text_layer_norm."),
        (r"^self_attn\.in_proj_(weight|bias)$", "self_attn.QKV(query,key,value).\\1"),
        (r"^self_attn\.out_proj\.", "self_attn.out_proj."),
        (r"^norm2\.", "self_attn_layer_norm."),
        (r"^norm3\.", "final_layer_norm."),
        (r"^linear1\.", "fc1."),
        (r"^linear2\.", "fc2."),
    ),
}
_QKV = re.compile(r"QKV\((\w+),(\w+),(\w+)\)")
_BACKBONE_NORM = re.compile(r"^BACKBONE_NORM_(\d)\.")


def _apply(name: str, table: tuple[tuple[str, str], ...], original: str) -> str:
    for pattern, replacement in table:
        renamed, count = re.subn(pattern, replacement, name, count=1)
        if count:
            return renamed
    raise CheckpointError(f"expected a key of the original GroundingDINO layout, got {original!r}")


def rename_original_key(name: str) -> str:
    """Transformers name of one original key; fused q/k/v keys come back as `QKV(q,k,v)`.

    Raises:
        CheckpointError: A key this converter does not know.
    """
    renamed = _apply(name, _RENAMES, name)
    renamed = _BACKBONE_NORM.sub(
        lambda m: f"model.backbone.conv_encoder.model.hidden_states_norms.stage{int(m[1]) + 1}.",
        renamed,
    )
    for marker, table in _INNER.items():
        head, sep, tail = renamed.partition(f".{marker}.")
        if sep:
            return f"{head}.{_apply(tail, table, name)}"
    return renamed


def convert_original_state_dict(state_dict: StateDict) -> StateDict:
    """Original GroundingDINO state dict -> `GroundingDinoForObjectDetection` state dict.

    Args:
        state_dict: Keys as in `torch.load(path)["model"]`, with or without a `module.` prefix.

    Returns:
        A new dict (tensors are shared, not copied, except q/k/v splits which are views).

    Raises:
        CheckpointError: A key the converter does not know.
    """
    converted: StateDict = {}
    for raw_name, tensor in state_dict.items():
        name = raw_name.removeprefix("module.")
        if _DROP.search(name):
            continue
        renamed = rename_original_key(name)
        match = _QKV.search(renamed)
        if match is None:
            converted[renamed] = tensor
            continue
        for part, chunk in zip(match.groups(), tensor.chunk(3, dim=0), strict=True):
            converted[renamed[: match.start()] + part + renamed[match.end() :]] = chunk
    return converted


def load_original_checkpoint(path: Path) -> StateDict:
    """Read an original `.pth` (`{"model": state_dict}` or a bare state dict) with weights_only.

    Raises:
        CheckpointError: The file is not a readable torch checkpoint with a state dict.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"expected a torch checkpoint at {path}, could not read it: {exc}"
        ) from exc
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"expected a state dict (or {{'model': state dict}}) in {path}")
    return state


def save_converted(state_dict: StateDict, path: Path) -> None:
    """Save a converted state dict as safetensors (shared tensors are cloned first)."""
    from safetensors.torch import save_file

    save_file({name: t.contiguous().clone() for name, t in state_dict.items()}, str(path))
