"""From GroundingDINO token logits to per-phrase candidate boxes.

Every query gets a probability per caption token (sigmoid of the logit). Its box score is the best
probability over all caption tokens, as in the original `predict()`. Instead of the original's
"merge every token above text_threshold into one phrase string" (which yields labels such as
"red block orange block"), each phrase scores the maximum over its own tokens and the query is
assigned to the best phrase; thresholds and deduplication follow in
`autolabel.models.detection.finalize_detections`.
"""

import torch

from autolabel.models.box_ops import cxcywh_norm_to_xyxy_px
from autolabel.models.detection import Candidates
from autolabel.models.prompts import PromptChunk


def chunk_candidates(
    logits: torch.Tensor,
    boxes_cxcywh_norm: torch.Tensor,
    chunk: PromptChunk,
    image_hw: tuple[int, int],
    min_score: float,
) -> Candidates:
    """Candidates of one image for one prompt chunk.

    Args:
        logits: (Q, T) float token logits for the chunk's caption (T = len(chunk.input_ids)).
        boxes_cxcywh_norm: (Q, 4) float boxes normalized to the image.
        chunk: The caption's phrases and their token spans.
        image_hw: (height, width) of the original image.
        min_score: Queries whose best phrase probability is below this are dropped early
            (pass the lowest threshold in use).

    Returns:
        Candidates with boxes in original-image pixels.
    """
    probs = logits.float().sigmoid()
    box_scores = probs.max(dim=-1).values
    phrase_probs = torch.stack(
        [probs[:, start:end].max(dim=-1).values for start, end in chunk.spans], -1
    )
    phrase_scores, best = phrase_probs.max(dim=-1)
    keep = torch.nonzero(phrase_scores >= min_score).flatten()
    spans = [chunk.spans[i] for i in best[keep].tolist()]
    phrase_ids = torch.tensor(chunk.phrase_indices, dtype=torch.long, device=best.device)
    return Candidates(
        boxes_xyxy_px=cxcywh_norm_to_xyxy_px(boxes_cxcywh_norm[keep].float(), image_hw),
        box_scores=box_scores[keep],
        phrase_indices=phrase_ids[best[keep]],
        phrase_scores=phrase_scores[keep],
        token_scores=tuple(
            probs[query, start:end]
            for query, (start, end) in zip(keep.tolist(), spans, strict=True)
        ),
    )
