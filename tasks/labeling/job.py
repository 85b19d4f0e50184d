"""Validated parameters of a labeling job, and the references tasks pass to each other.

Everything here is small and JSON-serialisable: Prefect stores flow and task parameters, so they
carry keys and ids, never pixels, tensors, models, clients or sessions, and never secrets.
"""

import dataclasses
import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autolabel.models.detection import DetectionConfig
from autolabel.models.errors import InvalidInputError
from autolabel.models.prompts import PromptSet
from autolabel.storage.db.tables import RunStatus


class LabelJob(BaseModel):
    """One auto-labeling job: where the images are, what to find, with which models.

    `source` is a store URL with an optional prefix (`s3://bucket/raw/2026/`, `file:///data/imgs`);
    `pattern` filters keys by glob, or `manifest` names a text/JSONL list of keys or URLs instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(description="Store URL with optional prefix, e.g. s3://bucket/raw/.")
    dataset: str = Field(min_length=1, max_length=200, description="Dataset name in the database.")
    prompts: list[str] = Field(
        default_factory=list,
        description='Category names, or one " . "-separated caption split into names.',
    )
    synonyms: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra phrases per category, mapped back to it."
    )
    pattern: str | None = Field(None, description="Glob on keys below the source, e.g. **/*.jpg.")
    manifest: str | None = Field(None, description="URL of a manifest listing keys or URLs.")
    boxes_from: str | None = Field(
        None, description="COCO JSON URL: segment its boxes instead of running the detector."
    )
    detector: str = Field("grounding-dino-swint-ogc", description="Detector model name.")
    segmenter: str = Field("efficientvit-sam-l0", description="EfficientViT-SAM model name.")
    thresholds: DetectionConfig = Field(
        default_factory=DetectionConfig,
        description="Detector post-processing: thresholds (global, per category), NMS, duplicates.",
    )
    shard_size: int = Field(256, ge=1, le=10_000, description="Images per shard task.")
    batch_size: int = Field(8, ge=1, le=1024, description="Images per device batch.")
    io_threads: int = Field(4, ge=1, le=64, description="Fetch/decode threads per shard.")
    max_failure_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="Abort the run when more images than this fail."
    )
    retry_failed: bool = Field(
        False, description="Retry images that failed before at the same etag (default: skip)."
    )
    random_weights: bool = Field(
        False, description="Use randomly initialised models (smoke tests only; labels are noise)."
    )

    @field_validator("prompts", mode="before")
    @classmethod
    def _split_caption(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(".")) if part]
        return value

    @model_validator(mode="after")
    def _check_prompts(self) -> "LabelJob":
        if self.boxes_from is None:
            try:
                self.prompt_set()
            except InvalidInputError as exc:
                raise ValueError(f"prompts {self.prompts!r}: {exc}") from exc
        unknown = sorted(set(self.synonyms) - set(self.prompts))
        if unknown:
            raise ValueError(f"expected synonyms for prompted categories, got unknown {unknown}")
        if self.pattern is not None and self.manifest is not None:
            raise ValueError("expected either pattern or manifest, got both")
        return self

    def prompt_set(self) -> PromptSet:
        """The categories and phrases to detect."""
        if self.synonyms:
            table = {name: list(self.synonyms.get(name, [])) for name in self.prompts}
            return PromptSet.from_categories(table)
        return PromptSet.from_categories(self.prompts)

    def work_key(self, *, detector_version: str, segmenter_version: str) -> str:
        """sha256 hex identifying the labels this job produces for an image.

        Two runs with the same key produce the same annotations for an image with the same etag,
        so a rerun skips images already done under this key.
        """
        identity = {
            "detector": detector_version if self.boxes_from is None else None,
            "boxes_from": self.boxes_from,
            "segmenter": segmenter_version,
            "prompts": self.prompts,
            "synonyms": self.synonyms,
            "thresholds": dataclasses.asdict(self.thresholds),
        }
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class ShardRef(BaseModel):
    """A shard of images to label, by database id."""

    model_config = ConfigDict(frozen=True)

    index: int
    image_ids: list[int]


class ShardResult(BaseModel):
    """What one shard task did."""

    model_config = ConfigDict(frozen=True)

    index: int
    images_done: int = 0
    images_failed: int = 0
    annotations: int = 0
    failures: dict[str, int] = Field(default_factory=dict, description="Failed images by reason.")
    seconds: dict[str, float] = Field(default_factory=dict, description="Time per stage.")


class RunContext(BaseModel):
    """What every shard of one run shares: ids and versions fixed when the run starts."""

    model_config = ConfigDict(frozen=True)

    dataset_id: int
    run_id: int
    work_key: str
    segmenter_version: str
    category_ids: dict[str, int]


class RunOutcome(BaseModel):
    """How the shards of a run ended, as the flow hands it to `finish_run`."""

    model_config = ConfigDict(frozen=True)

    status: RunStatus
    images_skipped: int = 0
    failures: dict[str, int] = Field(default_factory=dict, description="Failed images by reason.")
    seconds: dict[str, float] = Field(default_factory=dict, description="Time per stage.")
    wall_seconds: float = 0.0


class RunSummary(BaseModel):
    """The outcome of one label run, as stored and as shown to people."""

    model_config = ConfigDict(frozen=True)

    run_id: int
    dataset: str
    status: str
    images_done: int
    images_failed: int
    images_skipped: int
    annotations: int
    annotations_per_category: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict, description="Failed images by reason.")
    seconds: dict[str, float] = Field(default_factory=dict, description="Time per stage.")
    wall_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images_done / self.wall_seconds if self.wall_seconds > 0 else 0.0
