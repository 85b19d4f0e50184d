"""Tables of the annotation database (SQLAlchemy 2 typed mappings).

Idempotency keys: images are unique by (dataset_id, storage_key); `image_results` by
(image_id, work_key, etag), so a rerun of the same job skips images whose current etag already has
a `done` row; annotations by (image_id, work_key, instance_index), so a retried batch inserts
nothing twice. A `work_key` is the sha256 hex of model versions + prompts + thresholds.
"""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from autolabel.storage.db.base import Base, BigId, JsonDoc, Timestamp, str_enum, utc_now


class ImageStatus(enum.StrEnum):
    """Processing state of an image's current etag."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class RunStatus(enum.StrEnum):
    """Lifecycle of a label run."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    CRASHED = "crashed"

    @property
    def is_final(self) -> bool:
        """Whether the run has ended (every status but `running`)."""
        return self is not RunStatus.RUNNING


class ResultStatus(enum.StrEnum):
    """Outcome of one image under one work key."""

    DONE = "done"
    FAILED = "failed"


class ShardStatus(enum.StrEnum):
    """Lifecycle of one attempt at a shard run on a work pool."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CRASHED = "crashed"


class ReviewStatus(enum.StrEnum):
    """Human review state of an annotation.

    `superseded`: a reviewer corrected it; the corrected copy is another annotation (accepted),
    and this row stays as the original prediction. Rejected and superseded rows are left out of
    exports (`HIDDEN_REVIEW_STATUSES`).
    """

    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


HIDDEN_REVIEW_STATUSES = (ReviewStatus.REJECTED, ReviewStatus.SUPERSEDED)


class ReviewDecision(enum.StrEnum):
    """What one review did to one item: kept, corrected or dropped a prediction, or added one."""

    ACCEPTED = "accepted"
    CORRECTED = "corrected"
    REJECTED = "rejected"
    ADDED = "added"


class ModelStage(enum.StrEnum):
    """Release stage of a model version; at most one `production` per variant."""

    CANDIDATE = "candidate"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Dataset(Base):
    """A named collection of images and categories."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)


class Category(Base):
    """A class name (text prompt) within a dataset."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    supercategory: Mapped[str | None] = mapped_column(String(200))


class Image(Base):
    """An object-store image; `etag` identifies its content version."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("dataset_id", "storage_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    storage_key: Mapped[str] = mapped_column(Text)
    etag: Mapped[str] = mapped_column(String(200), default="")
    size_bytes: Mapped[int | None] = mapped_column(BigId)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[ImageStatus] = mapped_column(
        str_enum(ImageStatus, "image_status"), default=ImageStatus.PENDING
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now, onupdate=utc_now)


class ModelVersion(Base):
    """A registered set of weights; `variant` is the family that has one production version."""

    __tablename__ = "model_versions"
    __table_args__ = (
        Index(
            "uq_model_versions_production_variant",
            "variant",
            unique=True,
            postgresql_where=text("stage = 'production'"),
            sqlite_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    variant: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    storage_uri: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    stage: Mapped[ModelStage] = mapped_column(
        str_enum(ModelStage, "model_stage"), default=ModelStage.CANDIDATE
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)
    promoted_at: Mapped[datetime | None] = mapped_column(Timestamp())


class LabelRun(Base):
    """One execution of the labeling job over a dataset.

    Status: `running` while its process works (it renews `heartbeat_at`), then exactly one final
    status with a one-line `status_reason` where it did not complete: `failed` (an error, e.g. an
    unreadable source or bad weights, or a second job refused beside a running one), `aborted`
    (too many images failed, or interrupted), `crashed` (its process died: found by an expired
    heartbeat or a dead owner process). At most one run per dataset is `running` (a partial
    unique index), so two jobs never label one dataset at the same time.
    """

    __tablename__ = "label_runs"
    __table_args__ = (
        Index(
            "uq_label_runs_running_dataset",
            "dataset_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    work_key: Mapped[str] = mapped_column(String(64), index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    detector_model: Mapped[str | None] = mapped_column(String(200))
    segmenter_model: Mapped[str | None] = mapped_column(String(200))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    status: Mapped[RunStatus] = mapped_column(
        str_enum(RunStatus, "run_status"), default=RunStatus.RUNNING
    )
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_failed: Mapped[int] = mapped_column(Integer, default=0)
    images_skipped: Mapped[int] = mapped_column(Integer, default=0)
    annotations: Mapped[int] = mapped_column(BigId, default=0)
    timings: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    runtimes: Mapped[dict[str, Any]] = mapped_column(
        JsonDoc, default=dict, server_default=text("'{}'")
    )
    started_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    status_reason: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp())
    owner: Mapped[str | None] = mapped_column(String(200))
    owner_key: Mapped[str | None] = mapped_column(String(200))


class LabelShard(Base):
    """One attempt at one shard of a label run, run as its own flow run on a work pool.

    The attempt's process inserts it `running`, renews `heartbeat_at` with its progress
    (`images_done`, `images_failed`) while it works, and ends it `completed` with its
    `ShardResult` in `result`, or `failed` with a reason. The job's process declares it `crashed`
    when its process is gone or its heartbeat lapsed, and reruns the shard's pending images as
    the next attempt.
    """

    __tablename__ = "label_shards"
    __table_args__ = (UniqueConstraint("run_id", "shard_index", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("label_runs.id", ondelete="CASCADE"), index=True)
    shard_index: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[ShardStatus] = mapped_column(str_enum(ShardStatus, "shard_status"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(200))
    owner_key: Mapped[str | None] = mapped_column(String(200))
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    images_failed: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    status_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp())


class ImageResult(Base):
    """Idempotency record: image `image_id` at `etag` was processed under `work_key`."""

    __tablename__ = "image_results"
    __table_args__ = (UniqueConstraint("image_id", "work_key", "etag"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    work_key: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("label_runs.id", ondelete="SET NULL"))
    status: Mapped[ResultStatus] = mapped_column(str_enum(ResultStatus, "result_status"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    n_annotations: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)


class Annotation(Base):
    """One instance mask. Boxes are xywh in image pixels; `seg_counts` is COCO compressed RLE
    (column-major) of a `seg_height` x `seg_width` mask.

    Built for bulk insert speed on PostgreSQL (see bench/storage_throughput.py): no foreign
    keys (per-row FK triggers cost about half the insert rate) and no secondary indexes besides
    the idempotency key, which also serves per-image lookups. Instead, `write_annotations` checks
    once per batch, set-wise, that the images, categories and run exist and belong to the
    dataset, and `autolabel.storage.db.repository.delete_dataset` removes annotations explicitly
    (raw SQL deletes of images or datasets would leave orphan annotations). `work_key` uses the C
    collation on PostgreSQL (hex text, bytewise compare).
    """

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("image_id", "work_key", "instance_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(BigId)
    image_id: Mapped[int] = mapped_column(BigId)
    category_id: Mapped[int] = mapped_column(BigId)
    run_id: Mapped[int | None] = mapped_column(BigId)
    work_key: Mapped[str] = mapped_column(
        String(64).with_variant(String(64, collation="C"), "postgresql")
    )
    instance_index: Mapped[int] = mapped_column(Integer)
    bbox_x: Mapped[float] = mapped_column(Float)
    bbox_y: Mapped[float] = mapped_column(Float)
    bbox_w: Mapped[float] = mapped_column(Float)
    bbox_h: Mapped[float] = mapped_column(Float)
    area: Mapped[float] = mapped_column(Float)
    iscrowd: Mapped[bool] = mapped_column(Boolean, default=False)
    seg_counts: Mapped[str] = mapped_column(Text)
    seg_height: Mapped[int] = mapped_column(Integer)
    seg_width: Mapped[int] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    predicted_iou: Mapped[float | None] = mapped_column(Float)
    stability_score: Mapped[float | None] = mapped_column(Float)
    phrase: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(String(200))
    # IoU of the detector's box (the segmenter's prompt) with the mask's own box: low when the
    # mask spills out of or fills little of its box. None for rows no detector produced.
    box_iou: Mapped[float | None] = mapped_column(Float)
    review_status: Mapped[ReviewStatus] = mapped_column(
        str_enum(ReviewStatus, "review_status"), default=ReviewStatus.UNREVIEWED
    )


class ReviewImport(Base):
    """One review file brought back from a review tool; unique by content per dataset, so
    importing the same file again does nothing."""

    __tablename__ = "review_imports"
    __table_args__ = (UniqueConstraint("dataset_id", "sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    tool: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    reviewer: Mapped[str | None] = mapped_column(String(200))
    counts: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    imported_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)


class ReviewedImage(Base):
    """An image a review file covers: its predictions were each accepted, corrected or rejected."""

    __tablename__ = "reviewed_images"
    __table_args__ = (UniqueConstraint("import_id", "image_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("review_imports.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    reviewer: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)


class ReviewEvent(Base):
    """One decision on one item, never updated: the review history.

    `annotation_id` is the prediction reviewed (for `added`: the annotation the review created);
    `result_id` is the annotation that now stands for it (`corrected`: the corrected copy,
    `added`: the new one, `accepted`: the prediction itself, `rejected`: none). A decision
    already in place is not recorded again (`autolabel.storage.db.review_history`).
    """

    __tablename__ = "review_events"
    __table_args__ = (
        Index("ix_review_events_annotation", "annotation_id"),
        Index("ix_review_events_image", "image_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(
        ForeignKey("review_imports.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int] = mapped_column(BigId)
    image_id: Mapped[int] = mapped_column(BigId)
    annotation_id: Mapped[int] = mapped_column(BigId)
    result_id: Mapped[int | None] = mapped_column(BigId)
    decision: Mapped[ReviewDecision] = mapped_column(str_enum(ReviewDecision, "review_decision"))
    reviewer: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)
    item_key: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)


class CategoryThreshold(Base):
    """Detector thresholds tuned for one category from reviewed labels; later runs of the
    dataset use them unless a job sets its own."""

    __tablename__ = "category_thresholds"
    __table_args__ = (UniqueConstraint("category_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id", ondelete="CASCADE"))
    box_threshold: Mapped[float] = mapped_column(Float)
    text_threshold: Mapped[float] = mapped_column(Float)
    metric: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    sample_images: Mapped[int] = mapped_column(Integer, default=0)
    tuned_at: Mapped[datetime] = mapped_column(Timestamp(), default=utc_now)
