"""EfficientViT-SAM: EfficientViT image encoder plus SAM's prompt encoder and mask decoder."""

from typing import Any

import torch
from torch import Tensor, nn

from autolabel.models.efficientvit_sam.conv import NORM_EPS
from autolabel.models.efficientvit_sam.encoder import EfficientViTSamImageEncoder
from autolabel.models.efficientvit_sam.sam_modules import (
    MaskDecoder,
    PromptEncoder,
    TwoWayTransformer,
)

#: Side of the square frame that prompts are expressed in, for every variant (SAM's 1024).
PROMPT_FRAME_SIZE = 1024
#: Side of the low-resolution mask logits the decoder returns.
LOW_RES_MASK_SIZE = 256


def build_prompt_encoder(embed_dim: int = 256) -> Any:
    """SAM's prompt encoder: 1024-frame prompts, 64 x 64 embedding grid, 16 mask channels."""
    return PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(64, 64),
        input_image_size=(PROMPT_FRAME_SIZE, PROMPT_FRAME_SIZE),
        mask_in_chans=16,
    )


def build_mask_decoder(embed_dim: int = 256) -> Any:
    """SAM's mask decoder with a two-layer two-way transformer, 3 multimask outputs.

    The nn.LayerNorm layers of the transformer use eps 1e-6, as in the released checkpoints
    (the official zoo overrides PyTorch's 1e-5 default for every LayerNorm).
    """
    transformer = TwoWayTransformer(depth=2, embedding_dim=embed_dim, mlp_dim=2048, num_heads=8)
    for module in transformer.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = NORM_EPS
    return MaskDecoder(
        num_multimask_outputs=3,
        transformer=transformer,
        transformer_dim=embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


class EfficientViTSam(nn.Module):
    """The full promptable segmentation model.

    Args:
        image_encoder: Maps a (B, 3, S, S) preprocessed image to (B, 256, 64, 64).
        prompt_encoder: SAM `PromptEncoder` (prompts in the 1024 x 1024 frame).
        mask_decoder: SAM `MaskDecoder`.
        encoder_input_size: S, the square input side of the image encoder (512 or 1024).

    Attributes:
        mask_threshold: Logit threshold that turns mask logits into a binary mask (0.0).
    """

    mask_threshold: float = 0.0

    def __init__(
        self,
        *,
        image_encoder: EfficientViTSamImageEncoder,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        encoder_input_size: int,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        # segment-anything is untyped: keep its modules as Any for the type checker.
        self.prompt_encoder: Any = prompt_encoder
        self.mask_decoder: Any = mask_decoder
        self.encoder_input_size = encoder_input_size

    def forward(self, images: Tensor) -> Tensor:
        """Encode a preprocessed (B, 3, S, S) batch to (B, 256, 64, 64) image embeddings."""
        out: Tensor = self.image_encoder(images)
        return out

    def decode(
        self,
        image_embedding: Tensor,
        *,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        mask_input: Tensor | None,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Run the prompt encoder and mask decoder for B prompts on one image.

        Args:
            image_embedding: (1, 256, 64, 64) embedding of the image.
            points: (coords (B, N, 2) float, 1024-frame xy; labels (B, N) int) or None.
            boxes: (B, 4) float xyxy in the 1024 frame, or None.
            mask_input: (B, 1, 256, 256) float logits from a previous pass, or None.
            multimask_output: Return 3 masks per prompt instead of 1.

        Returns:
            low_res_logits (B, C, 256, 256) and iou_predictions (B, C), C = 3 or 1.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        image_pe = self.prompt_encoder.get_dense_pe()
        if mask_input is None and image_embedding.shape[0] == 1:
            # Without mask prompts every prompt sees the same image tokens: skip replicating them.
            masks, iou = predict_masks_shared_image(
                self.mask_decoder, image_embedding + dense[:1], image_pe, sparse
            )
        else:
            masks, iou = self.mask_decoder.predict_masks(
                image_embeddings=image_embedding,
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou[:, keep]


def predict_masks_shared_image(
    mask_decoder: Any, src: Tensor, image_pe: Tensor, sparse: Tensor
) -> tuple[Tensor, Tensor]:
    """SAM's `MaskDecoder.predict_masks` for B prompts on one image, without replicating it.

    Segment-anything repeats the (1, 256, 64, 64) image tokens B times before the two-way
    transformer. Its first layer only reads them, and its attention broadcasts over a batch of
    one, so this passes them once; the tokens become per-prompt after the first layer's
    image-to-token attention. Same arithmetic, less work and memory (B x 4 MB).

    Args:
        mask_decoder: SAM `MaskDecoder`.
        src: (1, 256, 64, 64) image embedding plus the (shared) dense prompt embedding.
        image_pe: (1, 256, 64, 64) positional encoding.
        sparse: (B, T, 256) sparse prompt embeddings.

    Returns:
        Mask logits (B, 4, 256, 256) and IoU predictions (B, 4): the single-mask output first,
        then the three multimask outputs, as `predict_masks` returns them.
    """
    decoder = mask_decoder
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)
    _, c, h, w = src.shape
    hs, keys = decoder.transformer(src, image_pe, tokens)
    b = hs.shape[0]
    if keys.shape[0] != b:  # a transformer without layers never mixes the prompts in
        keys = keys.expand(b, -1, -1)
    mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
    upscaled = decoder.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
        dim=1,
    )
    _, c_up, h_up, w_up = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c_up, h_up * w_up)).view(b, -1, h_up, w_up)
    return masks, decoder.iou_prediction_head(hs[:, 0, :])
