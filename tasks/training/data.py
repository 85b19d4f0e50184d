"""Streaming SA-1B training data: shards split over DDP ranks and DataLoader workers.

A *source* is a local folder or store URL (`file://`, `s3://bucket/prefix`) holding SA-1B tar
shards (`*.tar`, `*.tar.gz`), or a local folder of image + JSON pairs (one unit). Each epoch the
units are permuted with `(seed, epoch)`; with at least as many units as reading *slots*
(`world_size * num_workers`) slot k reads units k, k + slots, ...; with fewer units every slot
reads every unit and keeps every slots-th sample. Nothing is held beyond the current sample.

All randomness of a sample (flip, which masks, prompts) comes from a generator seeded with
`(seed, epoch, unit, position of the sample in the unit)`, independent of how the data is split,
so a stream resumed from a `position` yields exactly the samples that an uninterrupted stream
would have yielded next. Every bad item is logged and yielded as a `BadData` naming it, with the
reason, and the stream goes on with the next sample of the same unit: a malformed JSON, an RLE of
another size than its image, a missing or unpaired image (see `autolabel.storage.sa1b`), an
undecodable image or one of another size than its record. A bad item takes its place in the unit
like a sample (positions and seeds count it), so exactly one slot reports it. A damaged shard is
read up to the damage and then reported by name; a unit that cannot be opened is reported whole.
"""

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import IterableDataset, get_worker_info

from autolabel.models.training.augment import choose_masks, prepare_sample
from autolabel.models.training.prompt_sampling import sample_prompts
from autolabel.models.training.step import PromptedSample
from autolabel.storage.config import S3Config
from autolabel.storage.errors import FormatError, InvalidImageError, StorageError
from autolabel.storage.images import decode_image
from autolabel.storage.objectstore import open_store
from autolabel.storage.rle import decode_rle
from autolabel.storage.sa1b import BadSample, Sa1bSample, read_folder, read_shard
from autolabel.storage.urls import join_url

log = logging.getLogger(__name__)
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
FOLDER_UNIT = ""


@dataclass(frozen=True, slots=True)
class DataItem:
    """One prepared training sample and where it came from.

    Attributes:
        unit: Index of its unit (shard) in `list_units(source)`.
        slot_key: `"<unit>:<worker>"`, the key of the reading position it advances.
        index: Position of the sample among the samples this worker takes from the unit.
        sample: The prepared image, masks and prompts.
    """

    unit: int
    slot_key: str
    index: int
    sample: PromptedSample


BadData = BadSample
"""A unit, or one item of it, that could not be used: reported (and logged) instead of aborting.

`name` is the shard URL or folder path, `<shard>:<member>` or a file path for one item; `reason`
says what was expected and what was found.
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamConfig:
    """What the stream prepares: the paper's augmentation and prompt sampling.

    Attributes:
        input_size: Encoder input side S (512 for L models, 1024 for XL).
        max_masks: Masks sampled per image (64 in the paper).
        max_points: Max foreground points of a point prompt (10).
        flip_probability: Probability of a horizontal flip (0.5).
        seed: Base seed of every per-sample generator and of the unit order.
        teacher_input_size: Also prepare the distillation teacher's input (1024) when set.
    """

    input_size: int
    max_masks: int = 64
    max_points: int = 10
    flip_probability: float = 0.5
    seed: int = 0
    teacher_input_size: int | None = None


@dataclass(slots=True)
class StreamPosition:
    """Where a rank's stream stands: its epoch and samples consumed per `slot_key`."""

    epoch: int = 0
    consumed: dict[str, int] = field(default_factory=dict)

    def advance(self, item: DataItem) -> None:
        """Record that `item` was consumed."""
        self.consumed[item.slot_key] = max(self.consumed.get(item.slot_key, 0), item.index + 1)

    def to_dict(self) -> dict[str, object]:
        """Plain dict for checkpoints."""
        return {"epoch": self.epoch, "consumed": dict(self.consumed)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "StreamPosition":
        """Inverse of `to_dict`."""
        consumed = data.get("consumed", {})
        epoch = data.get("epoch", 0)
        if not isinstance(consumed, Mapping) or not isinstance(epoch, int):
            raise ValueError(f"expected a stream position dict, got {dict(data)}")
        return cls(epoch=epoch, consumed={str(k): int(v) for k, v in consumed.items()})


@dataclass(slots=True)
class DataTally:
    """What a rank's stream gave to training, over all its epochs (an item read again counts again).

    Attributes:
        used: Samples taken into optimiser steps.
        skipped: Bad items met (each is yielded as `BadData` and skipped).
        bad: Name -> reason of each bad item, first met first.
    """

    used: int = 0
    skipped: int = 0
    bad: dict[str, str] = field(default_factory=dict)

    def count(self, item: DataItem | BadData) -> None:
        """Record that `item` was used (a `DataItem`) or skipped (a `BadData`)."""
        if isinstance(item, DataItem):
            self.used += 1
            return
        self.skipped += 1
        self.bad.setdefault(item.name, item.reason)

    def merge(self, other: "DataTally") -> None:
        """Add `other`'s counts and bad items (another rank's) to this one."""
        self.used += other.used
        self.skipped += other.skipped
        for name, reason in other.bad.items():
            self.bad.setdefault(name, reason)

    def to_dict(self) -> dict[str, object]:
        """Plain dict for checkpoints."""
        return {"used": self.used, "skipped": self.skipped, "bad": dict(self.bad)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "DataTally":
        """Inverse of `to_dict`."""
        used, skipped, bad = data.get("used", 0), data.get("skipped", 0), data.get("bad", {})
        if (
            not isinstance(used, int)
            or not isinstance(skipped, int)
            or not isinstance(bad, Mapping)
        ):
            raise ValueError(f"expected a data tally dict, got {dict(data)}")
        return cls(used=used, skipped=skipped, bad={str(k): str(v) for k, v in bad.items()})


def list_units(source: str, *, s3: S3Config | None = None) -> list[str]:
    """Sorted shard keys of `source`, or `[FOLDER_UNIT]` for a local folder of JSON pairs.

    Args:
        source: Local folder or store URL.
        s3: S3 client settings for `s3://` sources (endpoint, region, ...).

    Raises:
        StorageError: the source cannot be listed, or holds no shards and no JSON files.
    """
    local = Path(source)
    if "://" not in source and local.is_dir() and not any(local.glob("*.tar*")):
        if not any(local.rglob("*.json")):
            raise FormatError(f"expected SA-1B shards or JSON files in {source}, found none")
        return [FOLDER_UNIT]
    store = open_store(source, s3=s3)
    keys = sorted(info.key for info in store.list(suffixes=SHARD_SUFFIXES))
    if not keys:
        raise FormatError(f"expected SA-1B tar shards ({', '.join(SHARD_SUFFIXES)}) in {source}")
    return keys


def sample_rgb(raw: Sa1bSample) -> npt.NDArray[np.uint8]:
    """The decoded (H, W, 3) uint8 RGB image of a sample, checked against its record's size.

    Raises:
        InvalidImageError: the image cannot be decoded.
        FormatError: the image size differs from its record.
    """
    rgb = decode_image(raw.image_bytes).rgb
    height, width = raw.record.image.height, raw.record.image.width
    if rgb.shape[:2] != (height, width):
        raise FormatError(
            f"expected a {height}x{width} image (its record's size), got "
            f"{rgb.shape[0]}x{rgb.shape[1]}"
        )
    return rgb


def decode_sample(
    raw: Sa1bSample, config: StreamConfig, rng: np.random.Generator
) -> PromptedSample | None:
    """Decode and prepare one SA-1B sample; None when it has no usable mask.

    Raises:
        InvalidImageError: the image cannot be decoded.
        FormatError: the image size differs from its record, or a mask is not a valid RLE.
    """
    record = raw.record
    rgb = sample_rgb(raw)
    flip = bool(rng.random() < config.flip_probability)
    picks = choose_masks(len(record.annotations), config.max_masks, rng)
    if len(picks) == 0:
        return None
    masks = np.stack([decode_rle(record.annotations[i].segmentation) for i in picks])
    sample = prepare_sample(
        rgb,
        masks,
        input_size=config.input_size,
        flip=flip,
        image_id=record.image.image_id,
        teacher_input_size=config.teacher_input_size,
    )
    if len(sample.masks) == 0:
        return None
    prompts = sample_prompts(sample.masks, rng, max_points=config.max_points)
    return PromptedSample(sample=sample, prompts=prompts)


class Sa1bStream(IterableDataset[DataItem | BadData]):
    """One epoch of one rank's share of `source`, for a `DataLoader(batch_size=None)`.

    Args:
        source: Local folder or store URL.
        units: `list_units(source)` (listed once by the caller).
        config: Augmentation and prompt settings.
        rank: This process's rank; world_size: number of processes.
        position: Where to resume (epoch and consumed samples); fresh when None.
        s3: S3 client settings for `s3://` sources.
    """

    def __init__(
        self,
        source: str,
        units: list[str],
        config: StreamConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        position: StreamPosition | None = None,
        s3: S3Config | None = None,
    ) -> None:
        super().__init__()
        self.s3 = s3
        self.source, self.units, self.config = source, units, config
        self.rank, self.world_size = rank, world_size
        self.position = position or StreamPosition()

    def _assignment(self) -> tuple[int, list[int], int, int]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        slots, slot = self.world_size * workers, self.rank * workers + worker
        order = np.random.default_rng([self.config.seed, self.position.epoch]).permutation(
            len(self.units)
        )
        if len(order) >= slots:
            return worker, [int(u) for u in order[slot::slots]], 0, 1
        return worker, [int(u) for u in order], slot, slots

    def __iter__(self) -> Iterator[DataItem | BadData]:
        worker, mine, keep, every = self._assignment()
        for unit in mine:
            yield from self._read_unit(unit, f"{unit}:{worker}", keep, every)

    def _open(self, unit: int) -> tuple[str, Iterator[Sa1bSample | BadSample]]:
        key = self.units[unit]
        if key == FOLDER_UNIT:
            return self.source, read_folder(Path(self.source))
        store = open_store(self.source, s3=self.s3)
        name = join_url(self.source, key)
        return name, read_shard(store.open(key), name=name)

    def _read_unit(
        self, unit: int, slot_key: str, keep: int, every: int
    ) -> Iterator[DataItem | BadData]:
        skip = self.position.consumed.get(slot_key, 0)
        name, own = self.units[unit] or self.source, 0
        try:
            name, samples = self._open(unit)
            for n, raw in enumerate(samples):
                if n % every != keep:
                    continue
                index, own = own, own + 1
                if index < skip:
                    continue
                item = self._prepare(raw, unit, (slot_key, index, n), name)
                if item is not None:
                    yield item
        except StorageError as exc:  # the unit cannot be opened or read on (FormatError too)
            log.warning("skipping unreadable SA-1B data %s: %s", name, exc)
            yield BadData(name=name, reason=str(exc))

    def _prepare(
        self, raw: Sa1bSample | BadSample, unit: int, where: tuple[str, int, int], name: str
    ) -> DataItem | BadData | None:
        slot_key, index, position_in_unit = where
        seed = [self.config.seed, self.position.epoch, unit, position_in_unit]
        if isinstance(raw, BadSample):
            log.warning("skipping bad SA-1B item %s: %s", raw.name, raw.reason)
            return raw
        try:
            prepared = decode_sample(raw, self.config, np.random.default_rng(seed))
        except (InvalidImageError, FormatError) as exc:
            label = f"{name}:{raw.record.image.file_name}"
            log.warning("skipping bad SA-1B item %s: %s", label, exc)
            return BadData(name=label, reason=str(exc))
        if prepared is None:
            return None
        return DataItem(unit=unit, slot_key=slot_key, index=index, sample=prepared)


def make_loader(
    stream: Sa1bStream, *, num_workers: int
) -> torch.utils.data.DataLoader[DataItem | BadData]:
    """A `DataLoader` yielding the stream's items one by one (workers split the units)."""
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=False,
        multiprocessing_context="spawn" if num_workers > 0 else None,
    )
