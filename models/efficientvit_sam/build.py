"""Architectures of the five released EfficientViT-SAM variants, plus a tiny test variant.

Hyper-parameters follow the paper (Table 1) and the official model zoo, so that the state dict
matches the released checkpoints key for key. Every builder returns a randomly initialised model
in train mode; load weights with `autolabel.models.checkpoints.load_checkpoint`.
"""

from collections.abc import Sequence

from autolabel.models.efficientvit_sam.backbone import BlockKind, StageSpec, build_backbone
from autolabel.models.efficientvit_sam.encoder import EfficientViTSamImageEncoder
from autolabel.models.efficientvit_sam.neck import SamNeck
from autolabel.models.efficientvit_sam.sam import (
    EfficientViTSam,
    build_mask_decoder,
    build_prompt_encoder,
)


def _l_stages(
    depths: Sequence[int], widths: Sequence[int] = (32, 64, 128, 256, 512)
) -> list[StageSpec]:
    """EfficientViT-L: res, fmb, fmb, mb, att@5 stages; norm only on the last conv in 3 and 4."""
    blocks: tuple[BlockKind, ...] = ("res", "fmb", "fmb", "mb", "att@5")
    expands = (1.0, 4.0, 4.0, 4.0, 6.0)
    fewer = (False, False, False, True, True)
    return [
        StageSpec(width=w, depth=d, block=b, expand_ratio=e, norm_only_last=f)
        for w, d, b, e, f in zip(widths, depths, blocks, expands, fewer, strict=True)
    ]


def _xl_stages(depths: Sequence[int]) -> list[StageSpec]:
    """EfficientViT-XL: res, fmb x3, att@3 x2 stages (six stages, widths 32..1024)."""
    widths = (32, 64, 128, 256, 512, 1024)
    blocks: tuple[BlockKind, ...] = ("res", "fmb", "fmb", "fmb", "att@3", "att@3")
    expands = (1.0, 4.0, 4.0, 4.0, 4.0, 6.0)
    fewer = (False, False, False, False, True, True)
    return [
        StageSpec(width=w, depth=d, block=b, expand_ratio=e, norm_only_last=f)
        for w, d, b, e, f in zip(widths, depths, blocks, expands, fewer, strict=True)
    ]


def _assemble(
    stages: list[StageSpec],
    *,
    stage_ids: tuple[int, int, int],
    head_depth: int,
    expand_ratio: float,
    input_size: int,
    qkv_dim: int = 32,
    head_width: int = 256,
) -> EfficientViTSam:
    backbone = build_backbone(stages, qkv_dim=qkv_dim)
    neck = SamNeck(
        stage_ids=stage_ids,
        in_channels=[stages[i].width for i in stage_ids],
        head_width=head_width,
        head_depth=head_depth,
        expand_ratio=expand_ratio,
    )
    return EfficientViTSam(
        image_encoder=EfficientViTSamImageEncoder(backbone, neck),
        prompt_encoder=build_prompt_encoder(),
        mask_decoder=build_mask_decoder(),
        encoder_input_size=input_size,
    )


def efficientvit_sam_l0() -> EfficientViTSam:
    """EfficientViT-SAM-L0: 34.8 M parameters, 512 px encoder input."""
    return _assemble(
        _l_stages((1, 1, 1, 4, 4)),
        stage_ids=(4, 3, 2),
        head_depth=4,
        expand_ratio=1,
        input_size=512,
    )


def efficientvit_sam_l1() -> EfficientViTSam:
    """EfficientViT-SAM-L1: 47.7 M parameters, 512 px encoder input."""
    return _assemble(
        _l_stages((1, 1, 1, 6, 6)),
        stage_ids=(4, 3, 2),
        head_depth=8,
        expand_ratio=1,
        input_size=512,
    )


def efficientvit_sam_l2() -> EfficientViTSam:
    """EfficientViT-SAM-L2: 61.3 M parameters, 512 px encoder input."""
    return _assemble(
        _l_stages((1, 2, 2, 8, 8)),
        stage_ids=(4, 3, 2),
        head_depth=12,
        expand_ratio=1,
        input_size=512,
    )


def efficientvit_sam_xl0() -> EfficientViTSam:
    """EfficientViT-SAM-XL0: 117.0 M parameters, 1024 px encoder input."""
    return _assemble(
        _xl_stages((0, 1, 1, 2, 3, 3)),
        stage_ids=(5, 4, 3),
        head_depth=6,
        expand_ratio=4,
        input_size=1024,
    )


def efficientvit_sam_xl1() -> EfficientViTSam:
    """EfficientViT-SAM-XL1: 203.3 M parameters, 1024 px encoder input."""
    return _assemble(
        _xl_stages((1, 2, 2, 4, 6, 6)),
        stage_ids=(5, 4, 3),
        head_depth=12,
        expand_ratio=4,
        input_size=1024,
    )


def efficientvit_sam_test() -> EfficientViTSam:
    """A tiny random-init variant for fast tests: same code path, 128 px input, narrow widths.

    The neck fuses stages (4, 3, 2) at 4 x 4, 8 x 8 and 16 x 16 and upsamples them to 64 x 64.
    The SAM prompt encoder and mask decoder are the full-size ones (about 4 M parameters).
    """
    return _assemble(
        _l_stages((1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32)),
        stage_ids=(4, 3, 2),
        head_depth=1,
        expand_ratio=1,
        input_size=128,
        qkv_dim=8,
        head_width=32,
    )
