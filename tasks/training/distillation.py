"""Teacher embeddings for encoder distillation, computed once and cached in an object store.

Each embedding is stored as `<prefix>/<teacher checksum>/<image id>[-flip].pt` (float16,
`torch.save`), so a changed teacher never reuses another teacher's embeddings, and the mirrored
copy of an image (random horizontal flip) has its own entry.
"""

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from autolabel.models.training.augment import TrainSample
from autolabel.models.training.distill import (
    SAM_VIT_H,
    VitConfig,
    build_teacher_encoder,
    load_teacher_weights,
    teacher_embeddings,
)
from autolabel.storage.errors import ObjectNotFoundError
from autolabel.storage.objectstore import ObjectStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CacheStats:
    """Lookups served from the store (`hits`) and embeddings computed by the teacher (`misses`)."""

    hits: int = 0
    misses: int = 0


class TeacherCache:
    """Get-or-compute teacher embeddings of training samples.

    Args:
        store: Where embeddings live (local folder or S3 prefix).
        encoder: The teacher (SAM ViT image encoder) on its device, or None when every
            embedding is expected in the store already.
        checksum: `teacher_checksum(encoder)`, part of every key.
        prefix: Key prefix inside the store.
    """

    def __init__(
        self,
        store: ObjectStore,
        encoder: nn.Module | None,
        checksum: str,
        *,
        prefix: str = "teacher",
    ) -> None:
        self.store, self.encoder, self.checksum, self.prefix = store, encoder, checksum, prefix
        self.stats = CacheStats()

    def key(self, image_id: int, flipped: bool) -> str:
        """Store key of one embedding."""
        return f"{self.prefix}/{self.checksum}/{image_id}{'-flip' if flipped else ''}.pt"

    def embeddings(self, samples: Sequence[TrainSample]) -> Tensor:
        """(N, 256, 64, 64) float32 CPU teacher embeddings of `samples` (missing ones computed).

        Raises:
            ValueError: an embedding is missing and there is no encoder, or a sample has no
                `teacher_image`.
        """
        out: list[Tensor | None] = []
        missing: list[int] = []
        for i, sample in enumerate(samples):
            try:
                data = self.store.get(self.key(sample.image_id, sample.flipped))
            except ObjectNotFoundError:
                out.append(None)
                missing.append(i)
                continue
            out.append(torch.load(io.BytesIO(data), weights_only=True).float())
            self.stats.hits += 1
        if missing:
            self._compute(samples, missing, out)
        return torch.stack([t for t in out if t is not None])

    def _compute(
        self, samples: Sequence[TrainSample], missing: list[int], out: list[Tensor | None]
    ) -> None:
        images = [samples[i].teacher_image for i in missing]
        if self.encoder is None or any(im is None for im in images):
            ids = [samples[i].image_id for i in missing]
            raise ValueError(
                f"expected cached teacher embeddings for images {ids} under "
                f"{self.prefix}/{self.checksum}, or a teacher encoder and teacher images"
            )
        batch = torch.stack([im for im in images if im is not None])
        computed = teacher_embeddings(self.encoder, batch).cpu()
        for i, emb in zip(missing, computed, strict=True):
            buf = io.BytesIO()
            torch.save(emb.to(torch.float16).clone(), buf)
            self.store.put(self.key(samples[i].image_id, samples[i].flipped), buf.getvalue())
            out[i] = emb.to(torch.float16).float()  # the same values a later hit returns
            self.stats.misses += 1


def load_teacher(
    checkpoint: Path, device: torch.device, *, config: VitConfig = SAM_VIT_H
) -> tuple[nn.Module, str]:
    """Build the teacher encoder, load a SAM checkpoint into it; returns (encoder, checksum)."""
    encoder = build_teacher_encoder(config)
    checksum = load_teacher_weights(encoder, checkpoint, expected_sha256=None)
    log.info("distillation teacher %s loaded (checksum %s)", checkpoint, checksum)
    return encoder.to(device).eval(), checksum
