"""What one shard does: fetch + decode, boxes, masks, RLE, database rows (no Prefect here).

`run_shard` is the body of the `label_shard` task (`autolabel.tasks.labeling.label_tasks`): it
composes `autolabel.storage` (stores, decoding, RLE, bulk writes) with `autolabel.models` (a box
source, EfficientViT-SAM) through `run_pipeline`, so IO, device work and database writes overlap.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt
import torch

from autolabel.models.box_ops import box_iou
from autolabel.models.detection import Detections
from autolabel.models.efficientvit_sam.inference import segment_boxes_batch
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.mask_ops import stability_score
from autolabel.models.runtime.adaptive import AdaptiveBatcher
from autolabel.models.runtime.backends import SegmenterBackend
from autolabel.models.types import MaskSet
from autolabel.storage.db import label_runs, queries
from autolabel.storage.db.bulk import write_image_batch
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.records import AnnotationIn, ImageOutcome
from autolabel.storage.db.tables import ResultStatus
from autolabel.storage.errors import InvalidImageError, ObjectNotFoundError, UnsafeKeyError
from autolabel.storage.images import DecodedImage, decode_image
from autolabel.storage.objectstore import ObjectStore
from autolabel.storage.rle import encode_masks, rle_areas, rle_bboxes
from autolabel.storage.urls import key_under
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.pipeline import run_pipeline
from autolabel.tasks.resources import Resources

StoreResolver = Callable[[str], tuple[ObjectStore, str]]
WrittenCallback = Callable[[int, int], None]

# Stability score as SAM computes it, on the decoder's 256x256 logits.
_STABILITY_OFFSET = 1.0


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image to label: database id, full URL in its store, and the etag that was registered."""

    image_id: int
    url: str
    etag: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched image: decoded pixels, or the reason it cannot be labeled."""

    ref: ImageRef
    image: DecodedImage | None = None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedBoxes:
    """An image whose given boxes cannot be used: it is recorded failed with `reason`,
    `"<code>: <detail>"` (e.g. `invalid_boxes: annotation 7 bbox [nan, ...] is not finite`)."""

    reason: str


class BoxSource:
    """Where boxes come from: a text-prompted detector or boxes imported from COCO."""

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections | RejectedBoxes]:
        raise NotImplementedError


def fetch(ref: ImageRef, resolve: StoreResolver, *, max_pixels: int) -> Fetched:
    """Read and decode one image; a bad or missing image becomes a failure, not an exception.

    Transient storage errors propagate (the task is retried); a missing object or undecodable
    bytes are recorded against the image with a reason code.
    """
    try:
        store, key = resolve(ref.url)
    except UnsafeKeyError:
        return Fetched(ref, failure="outside_source")
    try:
        data = store.get(key)
    except ObjectNotFoundError:
        return Fetched(ref, failure="missing")
    try:
        return Fetched(ref, image=decode_image(data, max_pixels=max_pixels))
    except InvalidImageError as exc:
        return Fetched(ref, failure=exc.reason)


@dataclass(frozen=True, slots=True)
class Inferred:
    """Model output for one image, before RLE encoding (`ShardLabeler.finish` does that)."""

    item: Fetched
    detections: Detections | None = None
    masks: MaskSet | None = None


@dataclass
class ShardLabeler:
    """Turns fetched images into `ImageOutcome`s with RLE annotations, in two steps:
    `infer` (device work, on the pipeline's inference thread) and `finish` (RLE encoding and
    record building, on the writer thread, so that it overlaps the next batch's device work).

    Attributes:
        box_source: Produces boxes (pixel xyxy of the original image) per image.
        segmenter: EfficientViT-SAM, prepared for inference.
        category_ids: Database category id by category name.
        model_version: Recorded on every annotation.
        batcher: Encoder batch size, halved on out-of-memory and remembered.
        detect_batcher: The same for the box source.
    """

    box_source: BoxSource
    segmenter: EfficientViTSam | SegmenterBackend
    category_ids: dict[str, int]
    model_version: str
    batcher: AdaptiveBatcher
    detect_batcher: AdaptiveBatcher
    failures: dict[str, int] = field(default_factory=dict)

    def infer(self, batch: list[Fetched]) -> list[Inferred]:
        """Boxes and masks for the decodable images of `batch`; one result per image, in order.

        Images without boxes skip the image encoder.
        """
        decoded = [(f.ref, f.image) for f in batch if f.image is not None]
        detections = self.detect_batcher.run(decoded, self._detect)
        found: dict[int, tuple[DecodedImage, Detections]] = {}
        rejected: dict[int, str] = {}
        for (ref, image), det in zip(decoded, detections, strict=True):
            if isinstance(det, RejectedBoxes):
                rejected[ref.image_id] = det.reason
            else:
                found[ref.image_id] = (image, det)
        with_boxes = [(image.rgb, det.boxes_xyxy_px) for image, det in found.values() if len(det)]
        mask_sets = iter(self.batcher.run(with_boxes, self._segment))
        results = []
        for item in batch:
            if item.ref.image_id in rejected:
                results.append(Inferred(Fetched(item.ref, failure=rejected[item.ref.image_id])))
                continue
            if item.ref.image_id not in found:
                results.append(Inferred(item))
                continue
            _, det = found[item.ref.image_id]
            results.append(Inferred(item, det, next(mask_sets) if len(det) else None))
        return results

    def finish(self, results: list[Inferred]) -> list[ImageOutcome]:
        """Database records (RLE-encoded masks) for `infer`'s results, in order."""
        outcomes = []
        for result in results:
            image, det = result.item.image, result.detections
            if image is None or det is None:
                outcomes.append(self._failed(result.item))
            else:
                outcomes.append(self._done(result.item.ref, image, det, result.masks))
        return outcomes

    def _failed(self, item: Fetched) -> ImageOutcome:
        reason = item.failure or "unknown"
        code = reason.split(":", 1)[0]  # tallied by code; the image keeps the detail
        self.failures[code] = self.failures.get(code, 0) + 1
        return ImageOutcome(
            image_id=item.ref.image_id,
            etag=item.ref.etag,
            status=ResultStatus.FAILED,
            failure_reason=reason,
        )

    def _detect(
        self, pairs: Sequence[tuple[ImageRef, DecodedImage]]
    ) -> list[Detections | RejectedBoxes]:
        return self.box_source.boxes([ref for ref, _ in pairs], [image.rgb for _, image in pairs])

    def _segment(
        self, pairs: Sequence[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]]
    ) -> list[MaskSet]:
        with torch.inference_mode():
            return segment_boxes_batch(
                self.segmenter,
                [image for image, _ in pairs],
                [boxes for _, boxes in pairs],
                batch_size=len(pairs),
            )

    def _done(
        self, ref: ImageRef, image: DecodedImage, det: Detections, masks: MaskSet | None
    ) -> ImageOutcome:
        height, width = image.rgb.shape[:2]
        annotations = [] if masks is None else self._annotations(ref, det, masks, height, width)
        return ImageOutcome(
            image_id=ref.image_id,
            etag=ref.etag,
            status=ResultStatus.DONE,
            annotations=tuple(annotations),
            width=width,
            height=height,
        )

    def _annotations(
        self, ref: ImageRef, det: Detections, masks: MaskSet, height: int, width: int
    ) -> list[AnnotationIn]:
        rles = encode_masks(masks.masks_fortran)
        areas = rle_areas(rles)
        bboxes = rle_bboxes(rles)
        logits = torch.from_numpy(masks.low_res_logits)
        stability = stability_score(logits, 0.0, _STABILITY_OFFSET).numpy()
        agreement = _box_agreement(det.boxes_xyxy_px[: len(rles)], bboxes)
        annotations: list[AnnotationIn] = []
        for i, rle in enumerate(rles):
            if areas[i] == 0:
                continue  # the box held no mask: nothing to label
            x, y, w, h = (float(v) for v in bboxes[i])
            annotations.append(
                AnnotationIn(
                    image_id=ref.image_id,
                    category_id=self.category_ids[det.category_names[i]],
                    instance_index=len(annotations),
                    bbox_xywh_px=(x, y, w, h),
                    area=float(areas[i]),
                    seg_counts=rle["counts"],
                    seg_height=height,
                    seg_width=width,
                    score=float(det.scores[i]),
                    predicted_iou=float(masks.iou_predictions[i]),
                    stability_score=float(stability[i]),
                    phrase=det.phrases[i],
                    model_version=self.model_version,
                    box_iou=float(agreement[i]),
                )
            )
        return annotations


def _box_agreement(
    boxes_xyxy: npt.NDArray[np.float32], mask_xywh: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """(N,) IoU of each detector box with its mask's tight box."""
    if len(boxes_xyxy) == 0:
        return np.zeros(0, dtype=np.float32)
    mask_xyxy = torch.from_numpy(mask_xywh).float()
    mask_xyxy[:, 2:] += mask_xyxy[:, :2]
    return box_iou(torch.from_numpy(boxes_xyxy).float(), mask_xyxy).diagonal().numpy()


def resolve_image(resources: Resources, roots: Sequence[str], url: str) -> tuple[ObjectStore, str]:
    """(store, key) of an image URL: below one of the job's `roots` (its source, then its
    allowed roots), or in another S3 bucket; any other local path is refused."""
    for root in roots:
        key = key_under(root, url)
        if key is not None:
            return resources.store(root), key
    if url.startswith("s3://"):
        return resources.open_object(url)
    raise UnsafeKeyError(f"expected an image under {roots[0]} or an s3:// URL, got {url!r}")


class _Counter:
    """Accumulates what the writer thread stored."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.annotations = 0


def run_shard(
    shard: ShardRef,
    job: LabelJob,
    ctx: RunContext,
    *,
    resources: Resources,
    box_source: BoxSource,
    on_written: WrittenCallback | None = None,
) -> ShardResult:
    """Fetch, label and store the images of `shard`; safe to rerun (idempotent writes).

    Args:
        on_written: Called from the writer thread after each committed batch with
            (images done, images failed) of that batch, e.g. to advance a progress bar.
    """
    engine = resources.engine
    with session_scope(engine) as session:
        rows = queries.image_refs(session, image_ids=shard.image_ids)
    refs = [ImageRef(image_id=i, url=url, etag=etag) for i, url, etag in rows]
    segmenter, runtimes = chosen_runtimes(job, resources)
    with session_scope(engine) as session:
        label_runs.record_runtimes(session, run_id=ctx.run_id, runtimes=runtimes)
    labeler = ShardLabeler(
        box_source=box_source,
        segmenter=segmenter,
        category_ids=ctx.category_ids,
        model_version=ctx.segmenter_version,
        batcher=AdaptiveBatcher(job.batch_size),
        detect_batcher=AdaptiveBatcher(job.batch_size),
    )
    counter = _Counter()

    def write(results: list[Inferred]) -> None:
        outcomes = labeler.finish(results)
        with session_scope(engine) as session:
            stats = write_image_batch(
                session,
                dataset_id=ctx.dataset_id,
                run_id=ctx.run_id,
                work_key=ctx.work_key,
                outcomes=outcomes,
            )
        counter.done += stats.images_done
        counter.failed += stats.images_failed
        if on_written is not None:
            on_written(stats.images_done, stats.images_failed)
        counter.annotations += sum(len(o.annotations) for o in outcomes)

    times = run_pipeline(
        refs,
        fetch=partial(
            fetch,
            resolve=partial(resolve_image, resources, job.image_roots),
            max_pixels=resources.config.max_image_pixels,
        ),
        infer=labeler.infer,
        write=write,
        batch_size=job.batch_size,
        io_threads=job.io_threads,
    )
    return ShardResult(
        index=shard.index,
        images_done=counter.done,
        images_failed=counter.failed,
        annotations=counter.annotations,
        failures=dict(labeler.failures),
        seconds=times.as_dict(),
        runtimes={model: choice["runtime"] for model, choice in runtimes.items()},
    )


def chosen_runtimes(
    job: LabelJob, resources: Resources
) -> tuple[SegmenterBackend, dict[str, dict[str, str]]]:
    """The segmenter in its runtime, and the runtime choice of each model the job runs (the
    detector's only when it runs), as recorded on the label run."""
    segmenter, choice = resources.segmenter_runtime(
        job.segmenter, random_weights=job.random_weights, request=job.segmenter_request()
    )
    runtimes = {"segmenter": choice.record()}
    if job.boxes_from is None:
        _, detector_choice = resources.detector_runtime(
            job.detector, random_weights=job.random_weights, request=job.detector_request()
        )
        runtimes["detector"] = detector_choice.record()
    return segmenter, runtimes
