"""GroundingDINO image-side forward pass on cached text features.

Equivalent to `GroundingDinoForObjectDetection.forward` for unpadded batches (every image of the
batch has the same resized shape), except that the text side comes from `TextFeatures` computed
once per caption, only the last decoder layer's predictions are formed, and the two-stage query
selection can be replayed from given indices (for parity checks, where near-tied encoder scores of
random weights may swap places in `topk`).
"""

from typing import cast

import torch
from torch import nn
from transformers import GroundingDinoForObjectDetection
from transformers.models.grounding_dino.modeling_grounding_dino import GroundingDinoModel

from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.text import TextFeatures


def _multiscale_inputs(
    core: GroundingDinoModel, pixel_values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """Backbone + input projections, flattened: (features, masks, position embeddings, shapes)."""
    batch, _, height, width = pixel_values.shape
    pixel_mask = torch.ones((batch, height, width), dtype=torch.long, device=pixel_values.device)
    vision_features, position_list = core.backbone(pixel_values, pixel_mask)
    maps = [
        core.input_proj_vision[level](source) for level, (source, _) in enumerate(vision_features)
    ]
    masks = [mask for _, mask in vision_features]
    for level in range(len(maps), core.config.num_feature_levels):
        previous = vision_features[-1][0] if level == len(vision_features) else maps[-1]
        source = core.input_proj_vision[level](previous)
        mask = nn.functional.interpolate(pixel_mask[None].float(), size=source.shape[-2:])
        mask = mask.to(torch.bool)[0]
        maps.append(source)
        masks.append(mask)
        position_list.append(core.backbone.position_embedding(source, mask).to(source.dtype))
    shapes = [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]
    flat = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)
    flat_mask = torch.cat([m.flatten(1) for m in masks], 1)
    position = torch.cat(
        [
            p.flatten(2).transpose(1, 2) + core.level_embed[level].view(1, 1, -1)
            for level, p in enumerate(position_list)
        ],
        1,
    )
    return flat, flat_mask, position, shapes


def _select_queries(
    core: GroundingDinoModel,
    vision: torch.Tensor,
    text: torch.Tensor,
    flat_mask: torch.Tensor,
    shapes: list[tuple[int, int]],
    token_mask: torch.Tensor,
    query_indices: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage selection: (queries (B, Q, d), reference boxes (B, Q, 4) cxcywh normalized)."""
    proposal_query, proposals = core.generate_encoder_output_proposals(  # type: ignore[no-untyped-call]
        vision, ~flat_mask, shapes
    )
    class_logits = core.encoder_output_class_embed(proposal_query, text, token_mask)
    bbox_head = cast(nn.Module, getattr(core, "encoder_output_bbox_embed"))  # noqa: B009
    coord_logits = bbox_head(proposal_query) + proposals
    if query_indices is None:
        query_indices = torch.topk(class_logits.max(-1)[0], core.config.num_queries, dim=1)[1]
    reference = torch.gather(coord_logits, 1, query_indices.unsqueeze(-1).repeat(1, 1, 4))
    batch = vision.shape[0]
    target = core.query_position_embeddings.weight.unsqueeze(0).repeat(batch, 1, 1)
    return target, reference.sigmoid()


def _spatial(
    shapes: list[tuple[int, int]], masks: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    spatial = torch.as_tensor(shapes, dtype=torch.long, device=device)
    start = torch.cat((spatial.new_zeros((1,)), spatial.prod(1).cumsum(0)[:-1]))
    valid_ratios = torch.ones((masks.shape[0], len(shapes), 2), dtype=torch.float32, device=device)
    return spatial, start, valid_ratios


def image_forward(
    model: GroundingDinoForObjectDetection,
    pixel_values: torch.Tensor,
    text: TextFeatures,
    query_indices: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predict token logits and boxes for a batch of same-shape images and one caption.

    Args:
        model: The detector, in eval mode.
        pixel_values: (B, 3, H, W) float normalized images, all resized to the same shape.
        text: Features of the caption, shared by the whole batch.
        query_indices: Optional (B, Q) int64 two-stage selection to replay instead of `topk`.

    Returns:
        logits: (B, Q, T) float, one logit per query and caption token.
        boxes: (B, Q, 4) float cxcywh normalized to the resized image (= to the original image).
    """
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise InvalidInputError(f"expected (B, 3, H, W) images, got {tuple(pixel_values.shape)}")
    core = model.model
    batch = pixel_values.shape[0]
    text_features = text.features.expand(batch, -1, -1)
    token_mask = text.token_mask.expand(batch, -1)
    flat, flat_mask, position, shapes = _multiscale_inputs(core, pixel_values)
    spatial, start, valid_ratios = _spatial(shapes, flat_mask, flat.device)
    encoded = core.encoder(
        vision_features=flat,
        vision_attention_mask=~flat_mask,
        vision_position_embedding=position,
        spatial_shapes=spatial,
        spatial_shapes_list=shapes,
        level_start_index=start,
        valid_ratios=valid_ratios,
        text_features=text_features,
        text_attention_mask=~token_mask,
        text_position_embedding=None,
        text_self_attention_masks=~text.self_attention_mask.expand(batch, -1, -1),
        text_position_ids=text.position_ids.expand(batch, -1),
        return_dict=True,
    )
    vision, text_hidden = encoded.last_hidden_state_vision, encoded.last_hidden_state_text
    target, reference = _select_queries(
        core, vision, text_hidden, flat_mask, shapes, token_mask, query_indices
    )
    decoded = core.decoder(
        inputs_embeds=target,
        vision_encoder_hidden_states=vision,
        vision_encoder_attention_mask=flat_mask,
        text_encoder_hidden_states=text_hidden,
        text_encoder_attention_mask=~token_mask,
        reference_points=reference,
        spatial_shapes=spatial,
        spatial_shapes_list=shapes,
        level_start_index=start,
        valid_ratios=valid_ratios,
        self_attn_mask=None,
        return_dict=True,
    )
    hidden = decoded.intermediate_hidden_states[:, -1]
    last_reference = decoded.intermediate_reference_points[:, -2]
    length = text.input_ids.shape[1]
    logits = model.class_embed[-1](hidden, text_hidden, token_mask)[..., :length]
    delta = model.bbox_embed[-1](hidden)
    boxes = (delta + torch.special.logit(last_reference, eps=1e-5)).sigmoid()
    return logits, boxes
