"""LiteMLA: lightweight multi-scale linear attention with a ReLU kernel, and the EfficientViT block.

For a token count N = H * W and head dim d, attention is computed as
`(V_pad @ ReLU(K)^T) @ ReLU(Q)`, where `V_pad` is V with an extra row of ones; the last row of the
result is the normaliser, so `out = num / (den + eps)` (eps 1e-15). This is O(N d^2) instead of
O(N^2 d). When N <= d the quadratic form is used, as upstream does.
"""

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from autolabel.models.efficientvit_sam.conv import ConvLayer
from autolabel.models.efficientvit_sam.local_blocks import MBConv
from autolabel.models.efficientvit_sam.sequential import ResidualBlock

ATTENTION_EPS = 1e-15


def _split_qkv(qkv: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, 3*heads*d, H, W) -> q, k, v each (B, heads, d, H*W), with ReLU on q and k."""
    b, _, h, w = qkv.shape
    qkv = qkv.reshape(b, -1, 3 * dim, h * w)
    q, k, v = qkv[:, :, :dim], qkv[:, :, dim : 2 * dim], qkv[:, :, 2 * dim :]
    return F.relu(q), F.relu(k), v


def relu_linear_attention(qkv: Tensor, dim: int, eps: float = ATTENTION_EPS) -> Tensor:
    """Linear attention over per-head (q, k, v) channel groups.

    Args:
        qkv: (B, G*3*d, H, W) float tensor, G groups of [q (d), k (d), v (d)] channels.
        dim: Head dimension d.
        eps: Added to the normaliser.

    Returns:
        (B, G*d, H, W) tensor in float32 when the input is half or bfloat16, else the input dtype.
    """
    b, _, h, w = qkv.shape
    if qkv.dtype in (torch.float16, torch.bfloat16):
        qkv = qkv.float()
    q, k, v = _split_qkv(qkv, dim)
    v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1.0)
    out = torch.matmul(torch.matmul(v, k.transpose(-1, -2)), q)
    out = out[:, :, :-1] / (out[:, :, -1:] + eps)
    return out.reshape(b, -1, h, w)


def relu_quadratic_attention(qkv: Tensor, dim: int, eps: float = ATTENTION_EPS) -> Tensor:
    """Quadratic form of the same ReLU attention, used when H*W <= d (shapes as above)."""
    b, _, h, w = qkv.shape
    q, k, v = _split_qkv(qkv, dim)
    att = torch.matmul(k.transpose(-1, -2), q)
    att = (att.float() / (att.float().sum(dim=2, keepdim=True) + eps)).to(att.dtype)
    return torch.matmul(v, att).reshape(b, -1, h, w)


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention (EfficientViT's context module).

    `qkv` (1x1 conv) makes q, k, v for `heads = C // dim` heads; each `aggreg[i]` adds a
    multi-scale token set (depthwise k x k conv, then grouped 1x1 conv); attention runs over every
    set; `proj` (1x1 conv + BatchNorm) maps the concatenation back to C channels.

    Args:
        channels: C, input and output channels.
        dim: Head dimension d.
        scales: Kernel sizes of the multi-scale aggregation convs.
    """

    def __init__(self, channels: int, *, dim: int, scales: tuple[int, ...]) -> None:
        super().__init__()
        heads = channels // dim
        total = 3 * heads * dim
        self.dim = dim
        self.qkv = ConvLayer(channels, total, kernel_size=1, norm=False, act=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(total, total, s, padding=s // 2, groups=total, bias=False),
                nn.Conv2d(total, total, 1, groups=3 * heads, bias=False),
            )
            for s in scales
        )
        self.proj = ConvLayer(heads * dim * (1 + len(scales)), channels, kernel_size=1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, H, W) to (B, C, H, W)."""
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, *(op(qkv) for op in self.aggreg)], dim=1)
        h, w = qkv.shape[-2:]
        if h * w > self.dim:
            out = relu_linear_attention(qkv, self.dim).to(qkv.dtype)
        else:
            out = relu_quadratic_attention(qkv, self.dim)
        result: Tensor = self.proj(out)
        return result


class EfficientViTBlock(nn.Module):
    """LiteMLA context module then an MBConv local module, each residual.

    Args:
        channels: C, input and output channels.
        dim: Attention head dimension.
        expand_ratio: Expansion of the MBConv.
        scales: Multi-scale kernel sizes of LiteMLA.
    """

    def __init__(
        self, channels: int, *, dim: int, expand_ratio: float, scales: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.context_module = ResidualBlock(
            LiteMLA(channels, dim=dim, scales=scales), identity_shortcut=True
        )
        self.local_module = ResidualBlock(
            MBConv(channels, channels, expand_ratio=expand_ratio, norm_only_last=True),
            identity_shortcut=True,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, C, H, W) to (B, C, H, W)."""
        out: Tensor = self.local_module(self.context_module(x))
        return out
