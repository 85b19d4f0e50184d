"""The EfficientViT-L backbone: a stem stage plus strided stages of conv or attention blocks."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from autolabel.models.efficientvit_sam.conv import ConvLayer
from autolabel.models.efficientvit_sam.lite_mla import EfficientViTBlock
from autolabel.models.efficientvit_sam.local_blocks import FusedMBConv, MBConv, ResBlock
from autolabel.models.efficientvit_sam.sequential import OpSequential, ResidualBlock

BlockKind = Literal["res", "fmb", "mb", "att@3", "att@5"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StageSpec:
    """One backbone stage.

    Attributes:
        width: Output channels of the stage.
        depth: Number of stride-1 blocks after the entry block (the stem conv for stage 0,
            a stride-2 block for later stages).
        block: Block type of the stride-1 blocks; "att@k" is an EfficientViT block whose LiteMLA
            aggregates with a k x k kernel.
        expand_ratio: Expansion of the stride-1 blocks; the stride-2 entry block uses 4x this.
        norm_only_last: BatchNorm only on the last conv of each conv block (biases elsewhere).
    """

    width: int
    depth: int
    block: BlockKind
    expand_ratio: float
    norm_only_last: bool = False


def _conv_block(
    kind: BlockKind, c_in: int, c_out: int, stride: int, expand: float, norm_only_last: bool
) -> nn.Module:
    if kind == "res":
        return ResBlock(c_in, c_out, stride=stride, norm_only_last=norm_only_last)
    if kind == "fmb":
        return FusedMBConv(
            c_in, c_out, stride=stride, expand_ratio=expand, norm_only_last=norm_only_last
        )
    return MBConv(c_in, c_out, stride=stride, expand_ratio=expand, norm_only_last=norm_only_last)


def build_stage(c_in: int, spec: StageSpec, *, is_stem: bool, qkv_dim: int) -> OpSequential:
    """Build one stage: the entry op (stem conv or stride-2 block) then `spec.depth` blocks.

    Args:
        c_in: Input channels of the stage.
        spec: The stage description.
        is_stem: Stage 0: the entry op is a 3x3 stride-2 ConvLayer.
        qkv_dim: Head dimension of attention blocks.

    Returns:
        The stage; it maps (B, c_in, H, W) to (B, spec.width, H / 2, W / 2).
    """
    c = spec.width
    ops: list[nn.Module]
    if is_stem:
        ops = [ConvLayer(c_in, c, stride=2)]
    else:
        entry_kind: BlockKind = spec.block if spec.block in ("mb", "fmb") else "mb"
        entry = _conv_block(entry_kind, c_in, c, 2, spec.expand_ratio * 4, spec.norm_only_last)
        ops = [ResidualBlock(entry, identity_shortcut=False)]
    for _ in range(spec.depth):
        if spec.block.startswith("att@"):
            scale = int(spec.block.removeprefix("att@"))
            ops.append(
                EfficientViTBlock(c, dim=qkv_dim, expand_ratio=spec.expand_ratio, scales=(scale,))
            )
        else:
            block = _conv_block(spec.block, c, c, 1, spec.expand_ratio, spec.norm_only_last)
            ops.append(ResidualBlock(block, identity_shortcut=True))
    return OpSequential(ops)


class EfficientViTBackbone(nn.Module):
    """A stack of stages, each halving the resolution; returns every stage's output.

    Args:
        stages: The stages in order (state-dict keys `stages.<i>.*`).
    """

    def __init__(self, stages: Sequence[nn.Module]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Map a (B, 3, S, S) image to [stage0 (B, C0, S/2, S/2), ..., stageN (S / 2^(N+1))]."""
        features: list[Tensor] = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def build_backbone(
    stages: Sequence[StageSpec], *, in_channels: int = 3, qkv_dim: int = 32
) -> EfficientViTBackbone:
    """Build an EfficientViT-L backbone from its stage descriptions (stage 0 is the stem)."""
    built: list[nn.Module] = []
    c_in = in_channels
    for i, spec in enumerate(stages):
        built.append(build_stage(c_in, spec, is_stem=i == 0, qkv_dim=qkv_dim))
        c_in = spec.width
    return EfficientViTBackbone(built)
