"""Plain records passed into and out of the repository (no ORM objects cross the boundary)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autolabel.storage.db.tables import ModelStage, ResultStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageIn:
    """An object-store image to register.

    Attributes:
        storage_key: Key (or URL) of the image in its store; unique within a dataset.
        etag: Content version from the store (`""` when unknown); a change means reprocess.
        size_bytes: Object size in bytes.
        width: Image width in pixels, when known.
        height: Image height in pixels, when known.
    """

    storage_key: str
    etag: str = ""
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnotationIn:
    """One instance to store for an image under the call's work key.

    Attributes:
        image_id: Database id of the image.
        category_id: Database id of the category.
        instance_index: 0-based position of the instance within (image, work key).
        bbox_xywh_px: Box (x, y, width, height), image pixels, origin top-left.
        area: Mask area in pixels.
        seg_counts: COCO compressed RLE string of a column-major `seg_height` x `seg_width` mask.
        seg_height: Mask height in pixels (the image height).
        seg_width: Mask width in pixels (the image width).
        score: Detector confidence in [0, 1].
        predicted_iou: Segmenter's IoU prediction.
        stability_score: Segmenter's stability score.
        phrase: Matched text phrase.
        model_version: Name of the segmenter model version.
        iscrowd: COCO crowd flag.
        box_iou: IoU of the detector's box with the mask's box (None: no detector box).
    """

    image_id: int
    category_id: int
    instance_index: int
    bbox_xywh_px: tuple[float, float, float, float]
    area: float
    seg_counts: str
    seg_height: int
    seg_width: int
    score: float | None = None
    predicted_iou: float | None = None
    stability_score: float | None = None
    phrase: str | None = None
    model_version: str | None = None
    iscrowd: bool = False
    box_iou: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageOutcome:
    """The result of processing one image at one etag under a work key.

    Attributes:
        image_id: Database id of the image.
        etag: The etag that was processed (from the registration the job read).
        status: done or failed.
        failure_reason: Machine-readable reason when failed (e.g. an InvalidImageError code).
        annotations: Every instance of the image (empty when failed or nothing found).
        width: Decoded width in pixels, when known.
        height: Decoded height in pixels, when known.
    """

    image_id: int
    etag: str
    status: ResultStatus
    failure_reason: str | None = None
    annotations: tuple[AnnotationIn, ...] = field(default=())
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchWriteStats:
    """What `write_image_batch` changed."""

    annotations_inserted: int
    images_replaced: int
    images_done: int
    images_failed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersionInfo:
    """A registered model version."""

    id: int
    name: str
    variant: str
    sha256: str
    storage_uri: str
    metrics: dict[str, Any]
    stage: ModelStage
    created_at: datetime
    promoted_at: datetime | None
