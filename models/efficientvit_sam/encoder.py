"""EfficientViT-SAM image encoder: backbone, SAM neck and a channel LayerNorm."""

import torch
from torch import Tensor, nn

from autolabel.models.efficientvit_sam.backbone import EfficientViTBackbone
from autolabel.models.efficientvit_sam.conv import NORM_EPS
from autolabel.models.efficientvit_sam.neck import SamNeck


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of a (B, C, H, W) tensor, computed as upstream.

    `(x - mean_c) / sqrt(mean_c((x - mean_c)^2) + eps) * weight + bias`; a subclass of
    `nn.LayerNorm` so its state dict is `weight`, `bias` of shape (C,).
    """

    def forward(self, x: Tensor) -> Tensor:
        """Normalise (B, C, H, W) over C (in float32 for half inputs, cast back)."""
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        out = x - torch.mean(x, dim=1, keepdim=True)
        out = out / torch.sqrt(torch.square(out).mean(dim=1, keepdim=True) + self.eps)
        weight, bias = self.weight.float(), self.bias.float()
        out = out * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        return out.to(dtype)


class EfficientViTSamImageEncoder(nn.Module):
    """Image (B, 3, S, S), normalised and padded, to the SAM embedding (B, 256, 64, 64).

    Args:
        backbone: The EfficientViT backbone.
        neck: The SAM neck reading the backbone's stage outputs.
        embed_dim: Embedding channels (256).
    """

    def __init__(self, backbone: EfficientViTBackbone, neck: SamNeck, embed_dim: int = 256) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.norm = LayerNorm2d(embed_dim, eps=NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a preprocessed (B, 3, S, S) float tensor to (B, 256, 64, 64)."""
        out: Tensor = self.norm(self.neck(self.backbone(x)))
        return out
