"""SAM neck: fuse three backbone stages into the 256 x 64 x 64 SAM image embedding."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from autolabel.models.efficientvit_sam.conv import ConvLayer
from autolabel.models.efficientvit_sam.local_blocks import FusedMBConv
from autolabel.models.efficientvit_sam.sequential import OpSequential, ResidualBlock

EMBEDDING_SIZE = 64


class UpsampleTo(nn.Module):
    """Bicubic resize (align_corners=False) to a fixed size; identity when already that size.

    Runs in float32 for half/bfloat16 inputs and casts back to the input dtype.

    Args:
        size: Output (H, W).
    """

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, h, w) to (B, C, *size)."""
        if tuple(x.shape[-2:]) == self.size:
            return x
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return F.interpolate(x, size=self.size, mode="bicubic", align_corners=False).to(dtype)


class SamNeck(nn.Module):
    """Project each selected stage to `head_width` channels, upsample to 64 x 64, sum, refine.

    The sum is `f0 + (f1 + f2)` in the order of `stage_ids` (deepest first), as upstream. Then
    `middle` (residual FusedMBConv blocks) and a 1x1 conv with bias to `out_channels`.

    Args:
        stage_ids: Indices of the backbone stages fused, deepest first.
        in_channels: Channels of those stages, same order.
        head_width: Width of the fused feature.
        head_depth: Number of residual FusedMBConv blocks.
        expand_ratio: Expansion of those blocks.
        out_channels: Embedding channels (256 for SAM).
    """

    def __init__(
        self,
        *,
        stage_ids: Sequence[int],
        in_channels: Sequence[int],
        head_width: int,
        head_depth: int,
        expand_ratio: float,
        out_channels: int = 256,
    ) -> None:
        super().__init__()
        if len(stage_ids) != len(in_channels):
            raise ValueError(
                f"expected one channel count per stage id, got {len(stage_ids)} ids and "
                f"{len(in_channels)} channel counts"
            )
        self.stage_ids = tuple(stage_ids)
        size = (EMBEDDING_SIZE, EMBEDDING_SIZE)
        self.input_ops = nn.ModuleList(
            OpSequential([ConvLayer(c, head_width, kernel_size=1, act=False), UpsampleTo(size)])
            for c in in_channels
        )
        blocks = [
            ResidualBlock(
                FusedMBConv(head_width, head_width, expand_ratio=expand_ratio),
                identity_shortcut=True,
            )
            for _ in range(head_depth)
        ]
        self.middle = OpSequential(blocks)
        head = ConvLayer(head_width, out_channels, kernel_size=1, bias=True, norm=False, act=False)
        self.output_ops = nn.ModuleList([OpSequential([head])])

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Map backbone stage outputs to a (B, out_channels, 64, 64) embedding (before the norm)."""
        inputs = [op(features[i]) for i, op in zip(self.stage_ids, self.input_ops, strict=True)]
        fused = inputs[-1]
        for feat in reversed(inputs[:-1]):
            fused = feat + fused
        out: Tensor = self.output_ops[0](self.middle(fused))
        return out
