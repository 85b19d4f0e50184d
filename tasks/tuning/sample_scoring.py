"""The reviewed sample of a dataset, re-run through its job's models and reduced to scores.

Thresholds can only be tuned downward if the detector is run below them, so the sample's images
go through the job's detector again (same model, runtime and settings as `autolabel label`) at a
low floor (`FLOOR`, or the job's own thresholds when lower) with the job's NMS and no cross-category
suppression; each candidate keeps its category, box score, text score and box, and, when matching
by masks, its EfficientViT-SAM mask from the job's segmenter (the labeling pipeline's box prompts).
Masks are the default: reviewers correct masks, and one image encoding plus a decoder pass per box
costs little beside the detector's pass. `match_by="box"` skips the segmenter and uses box IoU.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from autolabel.models.detection import DetectionConfig, Detector
from autolabel.models.efficientvit_sam.inference import segment_boxes_batch
from autolabel.models.prompts import PromptSet
from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.reviewed_labels import ReviewedLabel, reviewed_image_ids, reviewed_labels
from autolabel.storage.db.tables import LabelRun
from autolabel.storage.errors import StorageError
from autolabel.storage.mask_clip import fit_rle
from autolabel.storage.rle import Rle, encode_masks
from autolabel.tasks.labeling.job import LabelJob
from autolabel.tasks.labeling.shard import ImageRef, fetch, resolve_image
from autolabel.tasks.resources import Resources
from autolabel.tasks.tuning.overlap import ReviewedObject, score_image
from autolabel.tasks.tuning.scores import ImageScores, MatchBy, Metric, ScoredSample

FLOOR = 0.05
"""Box and text threshold the candidates are collected at (lower when the job's are lower)."""
FLOOR_MAX_DETECTIONS = 300
"""Most candidates kept per image at the floor (best text scores first)."""

Segmenter = Callable[[npt.NDArray[np.uint8], npt.NDArray[np.float32]], list[Rle]]
"""(H, W, 3) uint8 RGB image and (N, 4) xyxy pixel boxes -> one mask per box (compressed RLE of
the image's size)."""


class TuningInputError(StorageError, ValueError):
    """A tuning or prompt-comparison request the dataset cannot answer (no such category, no
    reviewed images, no label run that ran the detector)."""


class SampleRequest(BaseModel):
    """Which reviewed images of which dataset, and how detections are matched to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, max_length=200, description="Dataset name.")
    run_id: int | None = Field(
        None, description="Label run whose job is re-run; default: the latest that ran prompts."
    )
    sample: int | None = Field(
        None, ge=1, le=100_000, description="Most reviewed images used (default: all)."
    )
    seed: int = Field(0, description="Seed of the sample drawn when there are more images.")
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="Least IoU of a match.")
    match_by: MatchBy = Field("mask", description="Match by mask IoU or by box IoU.")


class SampleOutcome(BaseModel):
    """What a tuning or prompt-comparison result was measured on, and how."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    run_id: int = Field(description="The label run whose job (detector, prompts) was re-run.")
    metric: Metric
    iou_threshold: float
    match_by: MatchBy
    images: int = Field(description="Reviewed images scored.")
    skipped: dict[str, int] = Field(
        default_factory=dict, description="Reviewed images not scored, by reason."
    )


class TuningSource(BaseModel):
    """A resolved request: the dataset, the job to re-run and the sampled reviewed images."""

    model_config = ConfigDict(frozen=True)

    dataset_id: int
    run_id: int
    job: LabelJob
    image_ids: list[int]
    reviewed_images: int = Field(description="Reviewed images of the dataset, sampled or not.")


def resolve_source(request: SampleRequest, resources: Resources) -> TuningSource:
    """The dataset, its job (of `request.run_id` or its latest prompted run) and the sample.

    Raises:
        StorageConfigError: No such dataset.
        TuningInputError: No such run, no prompted run, or no reviewed images.
    """
    with session_scope(resources.engine) as session:
        dataset_id = queries.require_dataset(session, name=request.dataset)
        run_id, job = _prompted_job(session, dataset_id, request)
        reviewed = reviewed_image_ids(session, dataset_id=dataset_id)
    if not reviewed:
        raise TuningInputError(
            f"dataset {request.dataset!r} has no reviewed images; import a review first"
        )
    chosen = reviewed
    if request.sample is not None and request.sample < len(reviewed):
        drawn = np.random.default_rng(request.seed).choice(
            len(reviewed), request.sample, replace=False
        )
        chosen = sorted(reviewed[int(i)] for i in drawn)
    return TuningSource(
        dataset_id=dataset_id,
        run_id=run_id,
        job=job,
        image_ids=chosen,
        reviewed_images=len(reviewed),
    )


def _prompted_job(
    session: Session, dataset_id: int, request: SampleRequest
) -> tuple[int, LabelJob]:
    """The id and job of the requested run, or of the latest run that detected prompts."""
    stmt = select(LabelRun.id, LabelRun.parameters).where(LabelRun.dataset_id == dataset_id)
    if request.run_id is not None:
        stmt = stmt.where(LabelRun.id == request.run_id)
    for run_id, parameters in session.execute(stmt.order_by(LabelRun.id.desc())):
        if not isinstance(parameters, dict) or parameters.get("boxes_from") is not None:
            continue
        try:
            return int(run_id), LabelJob.model_validate(parameters)
        except ValidationError as exc:
            raise TuningInputError(
                f"expected run {run_id}'s parameters to describe a label job, got "
                f"{exc.error_count()} errors (first: {exc.errors()[0]['msg']}); pick a run "
                "with --run"
            ) from exc
    which = f"run {request.run_id}" if request.run_id is not None else "a label run"
    raise TuningInputError(
        f"expected {which} of dataset {request.dataset!r} that ran the detector on prompts, "
        "found none"
    )


def floor_config(config: DetectionConfig) -> DetectionConfig:
    """The job's post-processing at the floor: thresholds at `FLOOR` (or the job's lowest),
    the job's NMS, every cross-category duplicate kept, up to `FLOOR_MAX_DETECTIONS` boxes."""
    lowest = min(
        FLOOR,
        config.box_threshold,
        config.text_threshold,
        *config.category_box_thresholds.values(),
        *config.category_text_thresholds.values(),
    )
    return DetectionConfig(
        box_threshold=lowest,
        text_threshold=lowest,
        nms_iou=config.nms_iou,
        duplicate_policy="keep_both",
        duplicate_iou=config.duplicate_iou,
        max_detections=FLOOR_MAX_DETECTIONS,
    )


@dataclass(frozen=True, slots=True)
class SampleImage:
    """A decoded reviewed image and its reviewed labels.

    Attributes:
        image_id: Database id.
        rgb: (H, W, 3) uint8 RGB pixels.
        reviewed: Its reviewed labels, masks fitted to the image when matching by masks.
    """

    image_id: int
    rgb: npt.NDArray[np.uint8]
    reviewed: list[ReviewedObject]


def _reviewed_object(
    label: ReviewedLabel, height: int, width: int, *, masks: bool
) -> ReviewedObject:
    x, y, w, h = label.bbox_xywh_px
    mask = None
    if masks:
        mask = fit_rle(label.rle, height=height, width=width)
    return ReviewedObject(category=label.category, box_xyxy_px=(x, y, x + w, y + h), mask=mask)


def sample_batches(
    source: TuningSource,
    resources: Resources,
    *,
    match_by: MatchBy,
    skipped: dict[str, int],
) -> Iterator[list[SampleImage]]:
    """The sampled images with their reviewed labels, `job.batch_size` at a time (decoded
    pixels of one batch in memory); images that cannot be read are counted in `skipped` by
    reason."""
    job, engine = source.job, resources.engine
    resolve = partial(resolve_image, resources, job.image_roots)
    read = partial(fetch, resolve=resolve, max_pixels=resources.config.max_image_pixels)
    with ThreadPoolExecutor(job.io_threads, thread_name_prefix="tuning-fetch") as pool:
        for start in range(0, len(source.image_ids), job.batch_size):
            ids = source.image_ids[start : start + job.batch_size]
            with session_scope(engine) as session:
                refs = [
                    ImageRef(i, url, etag)
                    for i, url, etag in queries.image_refs(session, image_ids=ids)
                ]
                labels = reviewed_labels(session, dataset_id=source.dataset_id, image_ids=ids)
            batch: list[SampleImage] = []
            for item in pool.map(read, refs):
                if item.image is None:
                    reason = (item.failure or "unknown").split(":", 1)[0]
                    skipped[reason] = skipped.get(reason, 0) + 1
                    continue
                height, width = item.image.rgb.shape[:2]
                reviewed = [
                    _reviewed_object(label, height, width, masks=match_by == "mask")
                    for label in labels.get(item.ref.image_id, [])
                ]
                batch.append(SampleImage(item.ref.image_id, item.image.rgb, reviewed))
            if batch:
                yield batch


def job_segmenter(job: LabelJob, resources: Resources) -> Segmenter:
    """The job's segmenter (runtime chosen as for labeling) as a box -> mask function."""
    backend, _ = resources.segmenter_runtime(
        job.segmenter, random_weights=job.random_weights, request=job.segmenter_request()
    )

    def segment(rgb: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32]) -> list[Rle]:
        if len(boxes) == 0:
            return []
        with torch.inference_mode():
            (masks,) = segment_boxes_batch(backend, [rgb], [boxes], batch_size=1)
        return encode_masks(masks.masks_fortran)

    return segment


def score_batch(
    images: Sequence[SampleImage],
    detector: Detector,
    prompt: PromptSet,
    *,
    categories: Mapping[str, str],
    segment: Segmenter | None,
) -> list[ImageScores]:
    """Detect `prompt` in `images` and score the candidates against their reviewed labels
    (`categories`: detected category name -> the category it counts as)."""
    detections = detector.detect([image.rgb for image in images], prompt)
    out = []
    for image, det in zip(images, detections, strict=True):
        masks = None if segment is None else segment(image.rgb, det.boxes_xyxy_px)
        out.append(score_image(image.image_id, det, masks, image.reviewed, categories=categories))
    return out


def floor_detector(job: LabelJob, resources: Resources) -> Detector:
    """The job's detector (model, runtime) with the floor post-processing."""
    return resources.detector(
        job.detector,
        config=floor_config(job.thresholds),
        random_weights=job.random_weights,
        request=job.detector_request(),
    )


def score_sample(source: TuningSource, resources: Resources, *, match_by: MatchBy) -> ScoredSample:
    """Run the job's detector (and segmenter, matching by masks) on the sample and score every
    candidate of the job's categories against the reviewed labels."""
    job = source.job
    detector = floor_detector(job, resources)
    segment = job_segmenter(job, resources) if match_by == "mask" else None
    prompt = job.prompt_set()
    categories = {c: c for c in prompt.categories}
    skipped: dict[str, int] = {}
    images: list[ImageScores] = []
    for batch in sample_batches(source, resources, match_by=match_by, skipped=skipped):
        images.extend(score_batch(batch, detector, prompt, categories=categories, segment=segment))
    return ScoredSample(images=images, match_by=match_by, skipped=skipped)
