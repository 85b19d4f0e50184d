"""Encoder distillation (paper, sec. 3.2): the student's image embedding regresses SAM-ViT-H's.

The teacher is segment-anything's `ImageEncoderViT` (imported from `segment_anything.modeling`
after `autolabel.models.efficientvit_sam.sam_modules`, which makes that import torchvision-free).
It sees SAM's own preprocessing: long side 1024, normalised, padded to 1024 x 1024; its output
(B, 256, 64, 64) has the student's embedding shape, so the loss is a plain L2
(`losses.distillation_loss`).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import autolabel.models.efficientvit_sam.sam_modules  # noqa: F401  (torchvision-free import)
from autolabel.models.checkpoints import load_state_dict_strict, read_checkpoint
from autolabel.models.errors import CheckpointError

TEACHER_INPUT_SIZE = 1024
_ENCODER_PREFIX = "image_encoder."


@dataclass(frozen=True, slots=True)
class VitConfig:
    """`ImageEncoderViT` hyperparameters (SAM-ViT-H by default)."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    global_attn_indexes: tuple[int, ...] = (7, 15, 23, 31)
    img_size: int = TEACHER_INPUT_SIZE


SAM_VIT_H = VitConfig()


def build_teacher_encoder(config: VitConfig = SAM_VIT_H) -> nn.Module:
    """A randomly initialised SAM ViT image encoder (load weights with `load_teacher_weights`)."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT

    encoder: nn.Module = ImageEncoderViT(
        depth=config.depth,
        embed_dim=config.embed_dim,
        img_size=config.img_size,
        mlp_ratio=4,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_heads=config.num_heads,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=config.global_attn_indexes,
        window_size=14,
        out_chans=256,
    )
    return encoder


def load_teacher_weights(encoder: nn.Module, path: Path, *, expected_sha256: str | None) -> str:
    """Load the image-encoder weights of a SAM checkpoint (`sam_vit_h_4b8939.pth`) strictly.

    Args:
        encoder: From `build_teacher_encoder`.
        path: Full SAM checkpoint (keys `image_encoder.*`, ...) or an encoder-only state dict.
        expected_sha256: Verify the file first when given.

    Returns:
        The teacher checksum (`teacher_checksum(encoder)`) to key cached embeddings with.
    """
    raw: Any = read_checkpoint(path, expected_sha256=expected_sha256)
    keys = [k for k in raw if k.startswith(_ENCODER_PREFIX)]
    state = {k[len(_ENCODER_PREFIX) :]: raw[k] for k in keys} if keys else dict(raw)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"expected tensors in the SAM checkpoint {path}")
    load_state_dict_strict(encoder, state, source=str(path))
    return teacher_checksum(encoder)


def teacher_checksum(encoder: nn.Module) -> str:
    """sha256 over the encoder's parameter names, shapes and float32 values (16 hex digits)."""
    digest = hashlib.sha256()
    for name, value in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def teacher_embeddings(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, 256, 64, 64) float32 embeddings of (B, 3, 1024, 1024) SAM-preprocessed images."""
    encoder.eval()
    param = next(encoder.parameters())
    out: torch.Tensor = encoder(images.to(param.device, param.dtype))
    return out.float()
