"""Box sources for the labeling pipeline: a text-prompted detector, or boxes from a COCO file."""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from autolabel.models.detection import Detections, Detector
from autolabel.models.prompts import PromptSet
from autolabel.storage.coco import image_storage_key, read_coco
from autolabel.storage.errors import FormatError
from autolabel.tasks.labeling.job import MAX_NAME_CHARS, LabelJob
from autolabel.tasks.labeling.shard import BoxSource, ImageRef, RejectedBoxes, resolve_image
from autolabel.tasks.resources import Resources


@dataclass
class DetectorBoxes(BoxSource):
    """Boxes from a detector answering one prompt."""

    detector: Detector
    prompt: PromptSet

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections | RejectedBoxes]:
        del refs  # the detector looks at pixels only
        return list(self.detector.detect(images, self.prompt))


@dataclass(frozen=True, slots=True)
class _Box:
    annotation_id: object
    xyxy: tuple[float, float, float, float]
    category: str
    score: float


def _box(ann: dict[str, Any], category: str) -> _Box | str:
    """The annotation's box, or why it cannot be used (not 4 finite numbers, no area, bad
    score)."""
    ident, bbox, score = ann.get("id"), ann["bbox"], ann.get("score", 1.0)
    if not isinstance(bbox, list) or len(bbox) != 4:
        return f"annotation {ident} bbox {str(bbox)[:60]} is not 4 numbers"
    try:
        x, y, w, h = (float(v) for v in bbox)
        score = float(score)
    except (TypeError, ValueError):
        return f"annotation {ident} bbox {bbox} or score {score!r} is not numeric"
    if not all(math.isfinite(v) for v in (x, y, w, h, score)):
        return f"annotation {ident} bbox {bbox} or score {score} is not finite"
    if w <= 0 or h <= 0:
        return f"annotation {ident} bbox {bbox} has no area (width and height must be > 0)"
    return _Box(ident, (x, y, x + w, y + h), category, score)


class CocoBoxes(BoxSource):
    """Boxes of an existing COCO file (ground truth or another detector's results), by image.

    A COCO image names its picture by `coco_url` (a full `s3://` / `file://` URL) when present,
    else by `file_name`, relative to the job's source root (`a/b.jpg` under `s3://bucket/raw/`
    is `s3://bucket/raw/a/b.jpg`) or itself a full URL. An image matches only that exact URL;
    images without a match get no boxes. An image with a box that is not finite, has no area or
    lies outside the image is rejected whole (recorded failed as `invalid_boxes`, naming the
    box), never labeled with its other boxes only.
    """

    def __init__(self, coco_json: bytes, *, source_root: str, source_name: str) -> None:
        try:
            doc = read_coco(json.loads(coco_json), name=source_name)
            names = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
            urls = {
                int(im["id"]): image_storage_key(im, image_root=source_root) for im in doc["images"]
            }
            by_url: dict[str, list[_Box]] = {url: [] for url in urls.values()}
            bad: dict[str, list[str]] = {}
            for ann in doc["annotations"]:
                url = urls[int(ann["image_id"])]
                box = _box(ann, names[int(ann["category_id"])])
                if isinstance(box, str):
                    bad.setdefault(url, []).append(box)
                else:
                    by_url[url].append(box)
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(
                f"{source_name}: expected a COCO instances JSON, got {exc!r}"
            ) from exc
        long = [name for name in names.values() if len(name) > MAX_NAME_CHARS]
        if long:
            raise FormatError(
                f"{source_name}: expected category names of at most {MAX_NAME_CHARS} characters, "
                f"got {len(long[0])} in {long[0][:40]!r}..."
            )
        self.categories: tuple[str, ...] = tuple(dict.fromkeys(names.values()))
        self._by_url, self._bad = by_url, bad

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections | RejectedBoxes]:
        return [self._for(r.url, im) for r, im in zip(refs, images, strict=True)]

    def _for(self, url: str, image: npt.NDArray[np.uint8]) -> Detections | RejectedBoxes:
        if url in self._bad:
            problems = self._bad[url]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return RejectedBoxes(f"invalid_boxes: {problems[0]}{more}")
        return self._detections(self._by_url.get(url, []), image)

    def _detections(
        self, boxes: list[_Box], image: npt.NDArray[np.uint8]
    ) -> Detections | RejectedBoxes:
        height, width = int(image.shape[0]), int(image.shape[1])
        xyxy = np.array([b.xyxy for b in boxes], np.float32).reshape(-1, 4)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        outside = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
        if outside.any():
            first = boxes[int(np.argmax(outside))]
            return RejectedBoxes(
                f"invalid_boxes: annotation {first.annotation_id} box xyxy "
                f"{[round(v, 1) for v in first.xyxy]} lies outside the {width}x{height} image"
            )
        return Detections(
            image_hw=(height, width),
            boxes_xyxy_px=xyxy,
            scores=np.array([b.score for b in boxes], np.float32),
            category_ids=np.array([self.categories.index(b.category) for b in boxes], np.int64),
            category_names=tuple(b.category for b in boxes),
            phrases=tuple(b.category for b in boxes),
            token_scores=tuple(np.zeros(0, np.float32) for _ in boxes),
            duplicate_of=np.full(len(boxes), -1, np.int64),
        )


def box_source_for(job: LabelJob, resources: Resources) -> BoxSource:
    """The job's box source: its COCO boxes, or the detector answering its prompts.

    Both are built once per `resources` and job parameters.
    """
    if job.boxes_from is not None:
        url = job.boxes_from

        def load_coco() -> CocoBoxes:
            store, key = resolve_image(resources, job.image_roots, url)
            return CocoBoxes(store.get(key), source_root=job.source, source_name=url)

        return resources.cached(("boxes_from", url, job.source), load_coco)
    detector = resources.detector(
        job.detector,
        config=job.thresholds,
        random_weights=job.random_weights,
        request=job.detector_request(),
    )
    return DetectorBoxes(detector=detector, prompt=job.prompt_set())


def job_categories(job: LabelJob, resources: Resources) -> tuple[str, ...]:
    """Category names the job can produce: the COCO file's, or the prompted ones."""
    source = box_source_for(job, resources) if job.boxes_from is not None else None
    if isinstance(source, CocoBoxes):
        return source.categories
    return job.prompt_set().categories


MANY_PASSES = 4
"""Above this many detector passes per image a run warns (each pass is a full detector forward)."""


def detector_passes(job: LabelJob, resources: Resources) -> int:
    """Detector forward passes per image: one per caption chunk of the prompt (about 250
    tokens each); 0 when the boxes come from a COCO file."""
    source = box_source_for(job, resources)
    return len(source.detector.chunks(source.prompt)) if isinstance(source, DetectorBoxes) else 0
