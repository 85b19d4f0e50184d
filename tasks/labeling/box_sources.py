"""Box sources for the labeling pipeline: a text-prompted detector, or boxes from a COCO file."""

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autolabel.models.detection import Detections, Detector
from autolabel.models.prompts import PromptSet
from autolabel.storage.coco import image_storage_key, read_coco
from autolabel.storage.errors import FormatError
from autolabel.tasks.labeling.job import LabelJob
from autolabel.tasks.labeling.shard import BoxSource, ImageRef, resolve_image
from autolabel.tasks.resources import Resources


@dataclass
class DetectorBoxes(BoxSource):
    """Boxes from a detector answering one prompt."""

    detector: Detector
    prompt: PromptSet

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections]:
        del refs  # the detector looks at pixels only
        return self.detector.detect(images, self.prompt)


@dataclass(frozen=True, slots=True)
class _Box:
    xyxy: tuple[float, float, float, float]
    category: str
    score: float


class CocoBoxes(BoxSource):
    """Boxes of an existing COCO file (ground truth or another detector's results), by image.

    A COCO image names its picture by `coco_url` (a full `s3://` / `file://` URL) when present,
    else by `file_name`, relative to the job's source root (`a/b.jpg` under `s3://bucket/raw/`
    is `s3://bucket/raw/a/b.jpg`) or itself a full URL. An image matches only that exact URL;
    images without a match get no boxes.
    """

    def __init__(self, coco_json: bytes, *, source_root: str, source_name: str) -> None:
        try:
            doc = read_coco(json.loads(coco_json), name=source_name)
            names = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
            urls = {
                int(im["id"]): image_storage_key(im, image_root=source_root) for im in doc["images"]
            }
            by_url: dict[str, list[_Box]] = {url: [] for url in urls.values()}
            for ann in doc["annotations"]:
                x, y, w, h = (float(v) for v in ann["bbox"])
                box = _Box(
                    (x, y, x + w, y + h), names[int(ann["category_id"])], ann.get("score", 1.0)
                )
                by_url[urls[int(ann["image_id"])]].append(box)
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(
                f"{source_name}: expected a COCO instances JSON, got {exc!r}"
            ) from exc
        self.categories: tuple[str, ...] = tuple(dict.fromkeys(names.values()))
        self._by_url = by_url

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections]:
        return [
            self._detections(self._by_url.get(r.url, []), im)
            for r, im in zip(refs, images, strict=True)
        ]

    def _detections(self, boxes: list[_Box], image: npt.NDArray[np.uint8]) -> Detections:
        height, width = int(image.shape[0]), int(image.shape[1])
        xyxy = np.array([b.xyxy for b in boxes], np.float32).reshape(-1, 4)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
        valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        kept = [b for b, ok in zip(boxes, valid, strict=True) if ok]
        return Detections(
            image_hw=(height, width),
            boxes_xyxy_px=xyxy[valid],
            scores=np.array([b.score for b in kept], np.float32),
            category_ids=np.array([self.categories.index(b.category) for b in kept], np.int64),
            category_names=tuple(b.category for b in kept),
            phrases=tuple(b.category for b in kept),
            token_scores=tuple(np.zeros(0, np.float32) for _ in kept),
            duplicate_of=np.full(len(kept), -1, np.int64),
        )


def box_source_for(job: LabelJob, resources: Resources) -> BoxSource:
    """The job's box source: its COCO boxes, or the detector answering its prompts.

    Both are built once per `resources` and job parameters.
    """
    if job.boxes_from is not None:
        url = job.boxes_from

        def load_coco() -> CocoBoxes:
            store, key = resolve_image(resources, job.source, url)
            return CocoBoxes(store.get(key), source_root=job.source, source_name=url)

        return resources.cached(("boxes_from", url, job.source), load_coco)
    detector = resources.detector(
        job.detector, config=job.thresholds, random_weights=job.random_weights
    )
    return DetectorBoxes(detector=detector, prompt=job.prompt_set())


def job_categories(job: LabelJob, resources: Resources) -> tuple[str, ...]:
    """Category names the job can produce: the COCO file's, or the prompted ones."""
    source = box_source_for(job, resources) if job.boxes_from is not None else None
    if isinstance(source, CocoBoxes):
        return source.categories
    return job.prompt_set().categories
