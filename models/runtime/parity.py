"""The parity gate: a runtime is used only when it reproduces torch float32 on fixed inputs.

`sam_parity` runs a reference and a candidate `SegmenterBackend` on the same images and boxes
and compares the embeddings (largest absolute difference) and the binary masks (IoU per box).
The gate is the mean mask IoU: at least 0.99 for float32 runtimes, 0.98 for reduced precision.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import Tensor

from autolabel.models.runtime.backends import SegmenterBackend

MIN_MASK_IOU = {"fp32": 0.99, "bf16": 0.98, "fp16": 0.98}
#: Images and boxes of the fixed parity set.
PARITY_IMAGES, PARITY_BOXES = 2, 6


@dataclass(frozen=True, slots=True, kw_only=True)
class ParityReport:
    """How a candidate runtime compares with the reference.

    Attributes:
        candidate: The candidate's name.
        embedding_max_abs: Largest |difference| of the image embeddings.
        mean_mask_iou: Mean IoU of the candidate's binary masks with the reference's.
        worst_mask_iou: Smallest of those IoUs.
        threshold: The mean IoU the candidate needed.
    """

    candidate: str
    embedding_max_abs: float
    mean_mask_iou: float
    worst_mask_iou: float
    threshold: float

    @property
    def passed(self) -> bool:
        """Whether the candidate may be used."""
        return self.mean_mask_iou >= self.threshold

    def describe(self) -> str:
        """One line for logs and run records."""
        verdict = "passes" if self.passed else "fails"
        return (
            f"{self.candidate} {verdict} the parity gate: mean mask IoU {self.mean_mask_iou:.4f} "
            f"(worst {self.worst_mask_iou:.4f}, needed {self.threshold}), embedding max abs "
            f"difference {self.embedding_max_abs:.2e}"
        )


def parity_inputs(input_size: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed set of inputs: smooth random images, normalised as the encoder expects, and
    boxes of several sizes in the 1024 prompt frame.

    Returns:
        (PARITY_IMAGES, 3, S, S) float32 images and (PARITY_BOXES, 4) float32 xyxy boxes.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(PARITY_IMAGES, 3, 8, 8, generator=generator)
    images = F.interpolate(coarse, size=(input_size, input_size), mode="bicubic")
    images = images + 0.1 * torch.randn(images.shape, generator=generator)
    corners = torch.rand(PARITY_BOXES, 2, generator=generator) * 700
    sizes = torch.tensor([16.0, 64.0, 128.0, 256.0, 512.0, 300.0])[:PARITY_BOXES, None]
    boxes = torch.cat([corners, (corners + sizes).clamp(max=1023)], dim=1)
    return images.float(), boxes.float()


def _mask_ious(reference: Tensor, candidate: Tensor) -> Tensor:
    a, b = reference > 0, candidate > 0
    intersection = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def sam_parity(
    reference: SegmenterBackend,
    candidate: SegmenterBackend,
    *,
    precision: str = "fp32",
    seed: int = 0,
) -> ParityReport:
    """Compare `candidate` with `reference` on `parity_inputs` (see the module docstring)."""
    images, boxes = parity_inputs(reference.input_size, seed=seed)
    ref_emb = reference.encode(images).float().cpu()
    cand_emb = candidate.encode(images).float().cpu()
    ious = []
    for i in range(images.shape[0]):
        ref_logits, _ = reference.decode_boxes(ref_emb[i : i + 1], boxes)
        cand_logits, _ = candidate.decode_boxes(cand_emb[i : i + 1], boxes)
        ious.append(_mask_ious(ref_logits.float().cpu(), cand_logits.float().cpu()))
    all_ious = torch.cat(ious)
    return ParityReport(
        candidate=candidate.name,
        embedding_max_abs=float((ref_emb - cand_emb).abs().max()),
        mean_mask_iou=float(all_ious.mean()),
        worst_mask_iou=float(all_ious.min()),
        threshold=MIN_MASK_IOU[precision],
    )
