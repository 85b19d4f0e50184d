"""Convolutional blocks of EfficientViT: ResBlock, FusedMBConv and MBConv.

Each block's `norm_only_last` ("fewer norm" in the paper's code) drops the BatchNorm of every
conv except the last and gives those convs a bias instead. GELU (tanh) follows every conv except
the last.
"""

from torch import Tensor, nn

from autolabel.models.efficientvit_sam.conv import ConvLayer


class ResBlock(nn.Module):
    """Two 3x3 convs: `conv1` (C_in -> C_mid, stride) and `conv2` (C_mid -> C_out).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride: Stride of the first conv.
        expand_ratio: C_mid = round(C_in * expand_ratio).
        norm_only_last: BatchNorm on `conv2` only; `conv1` gets a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expand_ratio: float = 1.0,
        norm_only_last: bool = False,
    ) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.conv1 = ConvLayer(
            in_channels, mid, stride=stride, bias=norm_only_last, norm=not norm_only_last
        )
        self.conv2 = ConvLayer(mid, out_channels, act=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C_in, H, W) to (B, C_out, H / stride, W / stride)."""
        out: Tensor = self.conv2(self.conv1(x))
        return out


class FusedMBConv(nn.Module):
    """3x3 `spatial_conv` (C_in -> C_mid, stride) then 1x1 `point_conv` (C_mid -> C_out).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride: Stride of the spatial conv.
        expand_ratio: C_mid = round(C_in * expand_ratio).
        norm_only_last: BatchNorm on `point_conv` only; `spatial_conv` gets a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expand_ratio: float = 4.0,
        norm_only_last: bool = False,
    ) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.spatial_conv = ConvLayer(
            in_channels, mid, stride=stride, bias=norm_only_last, norm=not norm_only_last
        )
        self.point_conv = ConvLayer(mid, out_channels, kernel_size=1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C_in, H, W) to (B, C_out, H / stride, W / stride)."""
        out: Tensor = self.point_conv(self.spatial_conv(x))
        return out


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 project.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride: Stride of the depthwise conv.
        expand_ratio: C_mid = round(C_in * expand_ratio).
        norm_only_last: BatchNorm on `point_conv` only; the first two convs get a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expand_ratio: float = 4.0,
        norm_only_last: bool = False,
    ) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        with_norm = not norm_only_last
        self.inverted_conv = ConvLayer(
            in_channels, mid, kernel_size=1, bias=norm_only_last, norm=with_norm
        )
        self.depth_conv = ConvLayer(
            mid, mid, stride=stride, groups=mid, bias=norm_only_last, norm=with_norm
        )
        self.point_conv = ConvLayer(mid, out_channels, kernel_size=1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C_in, H, W) to (B, C_out, H / stride, W / stride)."""
        out: Tensor = self.point_conv(self.depth_conv(self.inverted_conv(x)))
        return out
