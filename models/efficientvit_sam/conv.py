"""Convolution + BatchNorm + activation: the basic layer of the EfficientViT image encoder."""

from torch import Tensor, nn

#: BatchNorm/LayerNorm epsilon of every released EfficientViT-SAM checkpoint (the official zoo
#: overrides PyTorch's 1e-5 default with this value).
NORM_EPS = 1e-6


def gelu_tanh() -> nn.GELU:
    """The image encoder's activation: GELU with the tanh approximation."""
    return nn.GELU(approximate="tanh")


class ConvLayer(nn.Module):
    """`Conv2d` with "same" padding, optionally followed by BatchNorm2d and GELU (tanh).

    State-dict keys: `conv.weight`, `conv.bias` (when `bias`), `norm.*` (when `norm`).

    Args:
        in_channels: Input channels C_in.
        out_channels: Output channels C_out.
        kernel_size: Square kernel size k; padding is k // 2.
        stride: Convolution stride.
        groups: Convolution groups (C_in for a depthwise convolution).
        bias: Whether the convolution has a bias.
        norm: Whether a BatchNorm2d (eps `NORM_EPS`) follows the convolution.
        act: Whether a GELU (tanh approximation) comes last.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=bias,
        )
        self.norm: nn.Module | None = nn.BatchNorm2d(out_channels, eps=NORM_EPS) if norm else None
        self.act: nn.Module | None = gelu_tanh() if act else None

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C_in, H, W) to (B, C_out, H / stride, W / stride)."""
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        return x
