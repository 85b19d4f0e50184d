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
from autolabel.models.runtime.choice import Backend, Precision, RuntimeRequest
from autolabel.storage.db.tables import Category, RunStatus
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.urls import parse_store_root

MAX_NAME_CHARS: int = Category.__table__.c.name.type.length  # type: ignore[attr-defined]
"""Longest category name or synonym phrase: the database column's length (200)."""
MAX_CATEGORIES = 300
"""Most categories in one job. Each ~250 prompt tokens cost one more detector pass per image
(`--dry-run` shows how many): larger vocabularies belong in several jobs."""
MAX_PHRASES = 600
"""Most phrases (categories and synonyms) in one job."""
MAX_URL_CHARS = 4096


class LabelJob(BaseModel):
    """One auto-labeling job: where the images are, what to find, with which models.

    `source` is a store URL with an optional prefix (`s3://bucket/raw/2026/`, `file:///data/imgs`);
    `pattern` filters keys by glob, or `manifest` names a text/JSONL list of keys or URLs instead.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        max_length=MAX_URL_CHARS,
        description="Store URL with optional prefix, e.g. s3://bucket/raw/.",
    )
    dataset: str = Field(min_length=1, max_length=200, description="Dataset name in the database.")
    prompts: list[str] = Field(
        default_factory=list,
        description='Category names, or one " . "-separated caption split into names.',
    )
    synonyms: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra phrases per category, mapped back to it."
    )
    pattern: str | None = Field(
        None, max_length=1024, description="Glob on keys below the source, e.g. **/*.jpg."
    )
    manifest: str | None = Field(
        None, max_length=MAX_URL_CHARS, description="URL of a manifest listing keys or URLs."
    )
    allowed_roots: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Store URLs besides `source` that manifest entries may name (a manifest is "
        "untrusted input: any other URL in it is refused).",
    )
    boxes_from: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        description="COCO JSON URL: segment its boxes instead of running the detector.",
    )
    detector: str = Field("grounding-dino-swint-ogc", description="Detector model name.")
    segmenter: str = Field("efficientvit-sam-l0", description="EfficientViT-SAM model name.")
    segmenter_backend: Backend = Field(
        "auto", description="Segmenter runtime: auto, torch, onnxruntime, openvino, tensorrt."
    )
    segmenter_precision: Precision = Field(
        "auto", description="Segmenter precision: auto, fp32, bf16, fp16."
    )
    detector_backend: Backend = Field(
        "auto", description="Detector runtime: auto, torch, onnxruntime, openvino."
    )
    detector_precision: Precision = Field(
        "auto", description="Detector precision: auto, fp32, bf16, fp16."
    )
    thresholds: DetectionConfig = Field(
        default_factory=DetectionConfig,
        description="Detector post-processing: thresholds (global, per category), NMS, duplicates.",
    )
    shard_size: int = Field(256, ge=1, le=10_000, description="Images per shard task.")
    batch_size: int = Field(8, ge=1, le=1024, description="Images per device batch.")
    io_threads: int = Field(4, ge=1, le=64, description="Fetch/decode threads per shard.")
    max_gpus: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Most GPUs (shard runs at once on a work pool) the job may use; default: "
        "the `labeling.shard_runs_in_flight` setting.",
    )
    max_failure_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="Abort the run when more images than this fail."
    )
    retry_failed: bool = Field(
        False, description="Retry images that failed before at the same etag (default: skip)."
    )
    random_weights: bool = Field(
        False, description="Use randomly initialised models (smoke tests only; labels are noise)."
    )
    tuned_thresholds: bool = Field(
        True,
        description="Fill the per-category thresholds the job does not set from the dataset's "
        "tuned ones (autolabel tune-thresholds).",
    )

    @field_validator("prompts", mode="before")
    @classmethod
    def _split_caption(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in (p.strip() for p in value.split(".")) if part]
        return value

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        try:
            parse_store_root(value)
        except StorageConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("allowed_roots")
    @classmethod
    def _check_roots(cls, value: list[str]) -> list[str]:
        for root in value:
            try:
                parse_store_root(root)
            except StorageConfigError as exc:
                raise ValueError(f"{root!r}: {exc}") from exc
        return value

    @field_validator("prompts")
    @classmethod
    def _bound_prompts(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_CATEGORIES:
            raise ValueError(
                f"expected at most {MAX_CATEGORIES} categories, got {len(value)}; split the "
                "vocabulary over several jobs"
            )
        _bound_lengths(value, "category")
        return value

    @field_validator("synonyms")
    @classmethod
    def _bound_synonyms(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for phrases in value.values():
            _bound_lengths(phrases, "synonym")
        return value

    @model_validator(mode="after")
    def _check_prompts(self) -> "LabelJob":
        phrases = len(self.prompts) + sum(len(v) for v in self.synonyms.values())
        if phrases > MAX_PHRASES:
            raise ValueError(
                f"expected at most {MAX_PHRASES} phrases (categories and synonyms), got {phrases}"
            )
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

    @property
    def image_roots(self) -> tuple[str, ...]:
        """Where the job's images may be: its source, then its allowed roots."""
        return (self.source, *self.allowed_roots)

    def segmenter_request(self) -> RuntimeRequest:
        """The segmenter runtime the job asks for."""
        return RuntimeRequest(self.segmenter_backend, self.segmenter_precision)

    def detector_request(self) -> RuntimeRequest:
        """The detector runtime the job asks for."""
        return RuntimeRequest(self.detector_backend, self.detector_precision)

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


def _bound_lengths(names: list[str], what: str) -> None:
    for name in names:
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(
                f"expected each {what} to have at most {MAX_NAME_CHARS} characters, got "
                f"{len(name)} in {name[:40]!r}..."
            )


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
    runtimes: dict[str, str] = Field(
        default_factory=dict, description="Runtime each model ran in, e.g. openvino-bf16."
    )


class RunClaim(BaseModel):
    """A started run: its dataset and id (the run holds the dataset while it is `running`)."""

    model_config = ConfigDict(frozen=True)

    dataset_id: int
    run_id: int


class RunContext(RunClaim):
    """What every shard of one run shares: ids and versions fixed when the run starts."""

    work_key: str
    segmenter_version: str
    category_ids: dict[str, int]


class RunOutcome(BaseModel):
    """How the shards of a run ended, as the flow hands it to `finish_run`."""

    model_config = ConfigDict(frozen=True)

    status: RunStatus
    reason: str | None = Field(None, description="Why the run did not complete (one line).")
    images_skipped: int = 0
    failures: dict[str, int] = Field(default_factory=dict, description="Failed images by reason.")
    seconds: dict[str, float] = Field(default_factory=dict, description="Time per stage.")
    runtimes: dict[str, str] = Field(
        default_factory=dict, description="Runtime each model ran in, e.g. openvino-bf16."
    )
    wall_seconds: float = 0.0


class RunSummary(BaseModel):
    """The outcome of one label run, as stored and as shown to people."""

    model_config = ConfigDict(frozen=True)

    run_id: int
    dataset: str
    status: str
    reason: str | None = None
    images_done: int
    images_failed: int
    images_skipped: int
    annotations: int
    annotations_per_category: dict[str, int] = Field(default_factory=dict)
    failures: dict[str, int] = Field(default_factory=dict, description="Failed images by reason.")
    seconds: dict[str, float] = Field(default_factory=dict, description="Time per stage.")
    runtimes: dict[str, str] = Field(
        default_factory=dict, description="Runtime each model ran in, e.g. openvino-bf16."
    )
    wall_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images_done / self.wall_seconds if self.wall_seconds > 0 else 0.0
