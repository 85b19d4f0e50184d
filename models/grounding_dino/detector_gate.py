"""The detector's parity gate: a runtime is used only when it finds the boxes torch float32 finds.

Elementwise comparison of the raw outputs would be meaningless: the two-stage query selection is
a top-k over encoder scores, and near-tied scores swap places under tiny numeric differences, so
the same boxes come back in another order. The gate compares detections instead: for each of the
reference's `top_k` highest-scoring queries, the candidate's best-overlapping box and that
query's score (sigmoid of the best token logit). A query agrees when the box IoU is at least
`MIN_MATCH_IOU` and the score differs by at most `MAX_SCORE_DIFFERENCE`; the gate is the fraction
of agreeing queries: at least 0.99 for float32 runtimes, 0.98 for reduced precision.

With random weights (the tests'), float32 runtimes agree on every query, while bfloat16 (torch
autocast or OpenVINO) keeps the boxes (mean IoU 0.995) but moves the saturated scores of random
logits (about 0.65 of queries agree), so it fails here; the gate runs on the weights a job uses.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import Tensor

from autolabel.models.box_ops import box_iou
from autolabel.models.grounding_dino.runtime import ImageSideRunner
from autolabel.models.grounding_dino.text import TextFeatures
from autolabel.models.runtime.parity import MIN_MASK_IOU

MIN_AGREEMENT = MIN_MASK_IOU
MIN_MATCH_IOU = 0.9
MAX_SCORE_DIFFERENCE = 0.05
#: Shape of the fixed parity images (a small bucket: one more export, seconds to run).
PARITY_HW = (320, 480)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorParityReport:
    """How a candidate image side compares with the reference.

    Attributes:
        candidate: The candidate's name.
        agreement: Fraction of the reference's top queries that agree (see the module docstring).
        mean_box_iou: Mean IoU of those queries' boxes with their best candidate match.
        mean_score_difference: Mean |score difference| of matched queries.
        threshold: The agreement the candidate needed.
    """

    candidate: str
    agreement: float
    mean_box_iou: float
    mean_score_difference: float
    threshold: float

    @property
    def passed(self) -> bool:
        """Whether the candidate may be used."""
        return self.agreement >= self.threshold

    def describe(self) -> str:
        """One line for logs and run records."""
        verdict = "passes" if self.passed else "fails"
        return (
            f"{self.candidate} {verdict} the detector parity gate: {self.agreement:.1%} of the "
            f"top queries agree (needed {self.threshold:.0%}; mean box IoU "
            f"{self.mean_box_iou:.4f}, mean score difference {self.mean_score_difference:.4f})"
        )


def parity_pixels(image_hw: tuple[int, int] = PARITY_HW, *, seed: int = 0) -> Tensor:
    """Two smooth random images, normalised as the detector's preprocessing leaves them."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(2, 3, 6, 9, generator=generator)
    images = F.interpolate(coarse, size=image_hw, mode="bicubic")
    return (images + 0.2 * torch.randn(images.shape, generator=generator)).float()


def _xyxy(cxcywh: Tensor) -> Tensor:
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def detector_parity(
    reference: ImageSideRunner,
    candidate: ImageSideRunner,
    text: TextFeatures,
    *,
    precision: str = "fp32",
    pixel_values: Tensor | None = None,
    top_k: int = 100,
) -> DetectorParityReport:
    """Compare `candidate` with `reference` on `pixel_values` (default `parity_pixels()`)."""
    pixels = parity_pixels() if pixel_values is None else pixel_values
    ref_logits, ref_boxes = reference(pixels, text)
    cand_logits, cand_boxes = candidate(pixels, text)
    ious, differences = [], []
    for i in range(pixels.shape[0]):
        ref_scores = ref_logits[i].sigmoid().amax(-1)
        cand_scores = cand_logits[i].sigmoid().amax(-1)
        top = ref_scores.topk(min(top_k, ref_scores.numel())).indices
        overlap = box_iou(_xyxy(ref_boxes[i][top]), _xyxy(cand_boxes[i]))
        best_iou, match = overlap.max(dim=1)
        ious.append(best_iou)
        differences.append((ref_scores[top] - cand_scores[match]).abs())
    all_ious, all_differences = torch.cat(ious), torch.cat(differences)
    agree = (all_ious >= MIN_MATCH_IOU) & (all_differences <= MAX_SCORE_DIFFERENCE)
    return DetectorParityReport(
        candidate=candidate.name,
        agreement=float(agree.float().mean()),
        mean_box_iou=float(all_ious.mean()),
        mean_score_difference=float(all_differences.mean()),
        threshold=MIN_AGREEMENT[precision],
    )
