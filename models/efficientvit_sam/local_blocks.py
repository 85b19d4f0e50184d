"""Convolutional blocks of EfficientViT: ResBlock, FusedMBConv and MBConv.

Each block is a short chain of `ConvLayer`s sharing one constructor: C_in -> C_mid -> ... -> C_out
with C_mid = round(C_in * expand_ratio) and the stride on the block's spatial conv. Its
`norm_only_last` ("fewer norm" in the paper's code) drops the BatchNorm of every conv except the
last and gives those convs a bias instead. GELU (tanh) follows every conv except the last. The
conv attribute names are the upstream checkpoint's keys.
"""

from typing import TypedDict

from torch import Tensor, nn

from autolabel.models.efficientvit_sam.conv import ConvLayer


class _InnerConv(TypedDict):
    """`ConvLayer` options of every conv but the last one of a block."""

    bias: bool
    norm: bool


class _ConvChain(nn.Module):
    """Base of the blocks: builds the convs with `_convs` and applies them in order.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride: Stride of the block's spatial conv.
        expand_ratio: C_mid = round(C_in * expand_ratio); the block's default when None.
        norm_only_last: BatchNorm on the last conv only; the others get a bias.
    """

    default_expand_ratio = 4.0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expand_ratio: float | None = None,
        norm_only_last: bool = False,
    ) -> None:
        super().__init__()
        ratio = self.default_expand_ratio if expand_ratio is None else expand_ratio
        inner = _InnerConv(bias=norm_only_last, norm=not norm_only_last)
        convs = self._convs(in_channels, round(in_channels * ratio), out_channels, stride, inner)
        for name, conv in convs.items():
            self.add_module(name, conv)

    def _convs(
        self, c_in: int, c_mid: int, c_out: int, stride: int, inner: _InnerConv
    ) -> dict[str, ConvLayer]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C_in, H, W) to (B, C_out, H / stride, W / stride)."""
        for conv in self.children():
            x = conv(x)
        return x


class ResBlock(_ConvChain):
    """Two 3x3 convs: `conv1` (C_in -> C_mid, stride) and `conv2` (C_mid -> C_out).

    Constructor as `_ConvChain`; expand_ratio defaults to 1.0.
    """

    default_expand_ratio = 1.0
    conv1: ConvLayer
    conv2: ConvLayer

    def _convs(
        self, c_in: int, c_mid: int, c_out: int, stride: int, inner: _InnerConv
    ) -> dict[str, ConvLayer]:
        return {
            "conv1": ConvLayer(c_in, c_mid, stride=stride, **inner),
            "conv2": ConvLayer(c_mid, c_out, act=False),
        }


class FusedMBConv(_ConvChain):
    """3x3 `spatial_conv` (C_in -> C_mid, stride) then 1x1 `point_conv` (C_mid -> C_out).

    Constructor as `_ConvChain`; expand_ratio defaults to 4.0.
    """

    spatial_conv: ConvLayer
    point_conv: ConvLayer

    def _convs(
        self, c_in: int, c_mid: int, c_out: int, stride: int, inner: _InnerConv
    ) -> dict[str, ConvLayer]:
        return {
            "spatial_conv": ConvLayer(c_in, c_mid, stride=stride, **inner),
            "point_conv": ConvLayer(c_mid, c_out, kernel_size=1, act=False),
        }


class MBConv(_ConvChain):
    """Inverted residual: 1x1 `inverted_conv` (expand), 3x3 depthwise `depth_conv` (stride),
    1x1 `point_conv` (project).

    Constructor as `_ConvChain`; expand_ratio defaults to 4.0.
    """

    inverted_conv: ConvLayer
    depth_conv: ConvLayer
    point_conv: ConvLayer

    def _convs(
        self, c_in: int, c_mid: int, c_out: int, stride: int, inner: _InnerConv
    ) -> dict[str, ConvLayer]:
        return {
            "inverted_conv": ConvLayer(c_in, c_mid, kernel_size=1, **inner),
            "depth_conv": ConvLayer(c_mid, c_mid, stride=stride, groups=c_mid, **inner),
            "point_conv": ConvLayer(c_mid, c_out, kernel_size=1, act=False),
        }
