"""Detector interface, per-image results, and the post-processing shared by every box source.

A `Detector` turns RGB images and a `PromptSet` into one `Detections` per image with boxes in
pixel xyxy of the ORIGINAL image. GroundingDINO implements it (`autolabel.models.grounding_dino`);
so can any other source of boxes, such as boxes imported from an existing COCO file.

`finalize_detections` is the policy every text-prompted backend shares: box and text thresholds
(global and per category), per-category NMS, the cross-category duplicate policy and the maximum
number of boxes per image.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from autolabel.models.box_ops import DuplicatePolicy, batched_nms, cross_category_duplicates
from autolabel.models.errors import InvalidInputError
from autolabel.models.prompts import PromptChunk, PromptSet


@dataclass(frozen=True, slots=True, kw_only=True)
class Detections:
    """Boxes found in one image.

    Attributes:
        image_hw: (height, width) of the original image in pixels.
        boxes_xyxy_px: (N, 4) float32 xyxy in original-image pixels, clipped to the image.
        scores: (N,) float32 in [0, 1], by decreasing value.
        category_ids: (N,) int64 index into `PromptSet.categories`.
        category_names: N category names.
        phrases: N matched phrases (a category name or one of its synonyms).
        token_scores: N float32 arrays, the probability of each token of the matched phrase.
        duplicate_of: (N,) int64; -1, or the row of the higher-scoring box of another category
            that this box overlaps (only non-negative under the "keep_both" policy).
        box_scores: (N,) float32 best probability over all caption tokens (the value the box
            threshold is compared with), or None for boxes that have none (e.g. imported ones).
    """

    image_hw: tuple[int, int]
    boxes_xyxy_px: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    category_ids: npt.NDArray[np.int64]
    category_names: tuple[str, ...]
    phrases: tuple[str, ...]
    token_scores: tuple[npt.NDArray[np.float32], ...]
    duplicate_of: npt.NDArray[np.int64]
    box_scores: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def is_duplicate(self) -> npt.NDArray[np.bool_]:
        """(N,) bool, True for boxes flagged as cross-category duplicates."""
        return self.duplicate_of >= 0


class Detector(Protocol):
    """Anything that returns boxes for images and a prompt."""

    def detect(
        self, images: Sequence[npt.NDArray[np.uint8]], prompt: PromptSet
    ) -> list[Detections]:
        """Detect the prompt's categories.

        Args:
            images: Each (H, W, 3) uint8 RGB; sizes may differ.
            prompt: Categories and phrases to find.

        Returns:
            One `Detections` per image, in input order.
        """
        ...

    def chunks(self, prompt: PromptSet) -> list[PromptChunk]:
        """The captions `detect` runs for `prompt`: one detector pass per image each."""
        ...


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"expected {name} in [0, 1], got {value}")


MAX_DETECTIONS_LIMIT = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectionConfig:
    """Post-processing knobs.

    Attributes:
        box_threshold: Keep a box when its best token probability (any token) reaches this.
        text_threshold: ... and the probability of its matched phrase reaches this.
        category_box_thresholds: Per-category override of `box_threshold`, by category name.
        category_text_thresholds: Per-category override of `text_threshold`, by category name.
        nms_iou: Per-category NMS: suppress a box overlapping a better one of the same category
            by more than this IoU.
        duplicate_policy: Boxes of different categories overlapping by more than `duplicate_iou`
            are one object: "keep_best" drops the lower-scoring ones, "keep_both" keeps them with
            `Detections.duplicate_of` set.
        duplicate_iou: IoU above which boxes of different categories are duplicates.
        max_detections: Most boxes kept per image (best scores first).
    """

    box_threshold: float = 0.35
    text_threshold: float = 0.25
    category_box_thresholds: Mapping[str, float] = field(default_factory=dict)
    category_text_thresholds: Mapping[str, float] = field(default_factory=dict)
    nms_iou: float = 0.5
    duplicate_policy: DuplicatePolicy = "keep_best"
    duplicate_iou: float = 0.8
    max_detections: int = 100

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold", "nms_iou", "duplicate_iou"):
            _check_unit(name, getattr(self, name))
        for table in (self.category_box_thresholds, self.category_text_thresholds):
            for category, value in table.items():
                _check_unit(f"threshold of {category!r}", value)
        if self.duplicate_policy not in ("keep_best", "keep_both"):
            raise InvalidInputError(
                "expected duplicate_policy 'keep_best' or 'keep_both', "
                f"got {self.duplicate_policy!r}"
            )
        if not 1 <= self.max_detections <= MAX_DETECTIONS_LIMIT:
            raise InvalidInputError(
                f"expected max_detections in [1, {MAX_DETECTIONS_LIMIT}], got {self.max_detections}"
            )

    def thresholds(self, prompt: PromptSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,) float32 box and text thresholds per category of `prompt`.

        Raises:
            InvalidInputError: A per-category threshold names a category not in the prompt.
        """
        for table in (self.category_box_thresholds, self.category_text_thresholds):
            unknown = sorted(set(table) - set(prompt.categories))
            if unknown:
                raise InvalidInputError(
                    f"expected thresholds for categories of the prompt {list(prompt.categories)}, "
                    f"got unknown {unknown}"
                )
        box = [self.category_box_thresholds.get(c, self.box_threshold) for c in prompt.categories]
        text = [
            self.category_text_thresholds.get(c, self.text_threshold) for c in prompt.categories
        ]
        return torch.tensor(box, dtype=torch.float32), torch.tensor(text, dtype=torch.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidates:
    """Unfiltered boxes of one image, from one or several prompt chunks.

    Attributes:
        boxes_xyxy_px: (N, 4) float32 xyxy in original-image pixels.
        box_scores: (N,) float32, best probability over all caption tokens.
        phrase_indices: (N,) int64 index into `PromptSet.phrases` of the matched phrase.
        phrase_scores: (N,) float32, probability of the matched phrase (max over its tokens).
        token_scores: N float32 tensors, probabilities of the matched phrase's tokens.
    """

    boxes_xyxy_px: torch.Tensor
    box_scores: torch.Tensor
    phrase_indices: torch.Tensor
    phrase_scores: torch.Tensor
    token_scores: tuple[torch.Tensor, ...]

    @staticmethod
    def concat(parts: Sequence["Candidates"]) -> "Candidates":
        """Join the candidates of several prompt chunks of the same image."""
        return Candidates(
            boxes_xyxy_px=torch.cat([p.boxes_xyxy_px for p in parts]),
            box_scores=torch.cat([p.box_scores for p in parts]),
            phrase_indices=torch.cat([p.phrase_indices for p in parts]),
            phrase_scores=torch.cat([p.phrase_scores for p in parts]),
            token_scores=tuple(t for p in parts for t in p.token_scores),
        )


def _select(candidates: Candidates, keep: torch.Tensor) -> Candidates:
    return Candidates(
        boxes_xyxy_px=candidates.boxes_xyxy_px[keep],
        box_scores=candidates.box_scores[keep],
        phrase_indices=candidates.phrase_indices[keep],
        phrase_scores=candidates.phrase_scores[keep],
        token_scores=tuple(candidates.token_scores[i] for i in keep.tolist()),
    )


def finalize_detections(
    candidates: Candidates, prompt: PromptSet, config: DetectionConfig, image_hw: tuple[int, int]
) -> Detections:
    """Apply thresholds, per-category NMS, the duplicate policy and the box limit.

    Args:
        candidates: Boxes of one image, in original-image pixels.
        prompt: The prompt the candidates answer (maps phrases to categories).
        config: Thresholds and policies.
        image_hw: (height, width) of the original image.

    Returns:
        The image's detections, by decreasing score.
    """
    box_thr, text_thr = config.thresholds(prompt)
    phrase_category = torch.tensor(prompt.phrase_category, dtype=torch.long)
    categories = phrase_category[candidates.phrase_indices.cpu()]
    passed = (candidates.box_scores.cpu() >= box_thr[categories]) & (
        candidates.phrase_scores.cpu() >= text_thr[categories]
    )
    kept = _select(candidates, torch.nonzero(passed).flatten())
    categories = categories[passed]
    order = batched_nms(kept.boxes_xyxy_px, kept.phrase_scores, categories, config.nms_iou)
    kept, categories = _select(kept, order), categories[order]
    duplicate_of = cross_category_duplicates(
        kept.boxes_xyxy_px, kept.phrase_scores, categories, config.duplicate_iou
    )
    if config.duplicate_policy == "keep_best":
        leaders = torch.nonzero(duplicate_of < 0).flatten()
        kept, categories, duplicate_of = (
            _select(kept, leaders),
            categories[leaders],
            duplicate_of[leaders],
        )
        duplicate_of = torch.full_like(duplicate_of, -1)
    count = min(len(categories), config.max_detections)
    return Detections(
        image_hw=image_hw,
        boxes_xyxy_px=kept.boxes_xyxy_px[:count].cpu().numpy().astype(np.float32).reshape(-1, 4),
        scores=kept.phrase_scores[:count].cpu().numpy().astype(np.float32),
        category_ids=categories[:count].numpy().astype(np.int64),
        category_names=tuple(prompt.categories[c] for c in categories[:count].tolist()),
        phrases=tuple(prompt.phrases[p] for p in kept.phrase_indices[:count].tolist()),
        token_scores=tuple(t.cpu().numpy().astype(np.float32) for t in kept.token_scores[:count]),
        duplicate_of=duplicate_of[:count].numpy().astype(np.int64),
        box_scores=kept.box_scores[:count].cpu().numpy().astype(np.float32),
    )
