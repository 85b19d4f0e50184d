"""Box sources for the labeling pipeline: a text-prompted detector, or boxes from a COCO file."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from posixpath import basename

import numpy as np
import numpy.typing as npt

from autolabel.models.detection import Detections, Detector
from autolabel.models.prompts import PromptSet
from autolabel.storage.errors import FormatError
from autolabel.tasks.labeling import BoxSource, ImageRef


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

    An image matches a COCO image whose `file_name` equals the end of its URL (`a/b.jpg` matches
    `s3://bucket/raw/a/b.jpg`), or, failing that, whose base name equals the URL's base name.
    Images without a match get no boxes.
    """

    def __init__(self, coco_json: bytes, *, source_name: str = "boxes_from") -> None:
        try:
            data = json.loads(coco_json)
            names = {int(c["id"]): str(c["name"]) for c in data["categories"]}
            files = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
            by_file: dict[str, list[_Box]] = {name.lstrip("/"): [] for name in files.values()}
            for ann in data["annotations"]:
                x, y, w, h = (float(v) for v in ann["bbox"])
                by_file[files[int(ann["image_id"])].lstrip("/")].append(
                    _Box(
                        (x, y, x + w, y + h), names[int(ann["category_id"])], ann.get("score", 1.0)
                    )
                )
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(
                f"{source_name}: expected a COCO instances JSON, got {exc!r}"
            ) from exc
        self.categories: tuple[str, ...] = tuple(dict.fromkeys(names.values()))
        self._by_file = by_file
        self._by_base: dict[str, list[_Box]] = {}
        for name, boxes in by_file.items():
            self._by_base.setdefault(basename(name), []).extend(boxes)

    def _lookup(self, url: str) -> list[_Box]:
        """Boxes of the longest COCO file_name that is a path suffix of `url`."""
        parts = url.split("://", 1)[-1].split("/")
        for start in range(len(parts)):
            boxes = self._by_file.get("/".join(parts[start:]))
            if boxes is not None:
                return boxes
        return self._by_base.get(parts[-1], [])

    def boxes(
        self, refs: Sequence[ImageRef], images: Sequence[npt.NDArray[np.uint8]]
    ) -> list[Detections]:
        return [
            self._detections(self._lookup(r.url), im) for r, im in zip(refs, images, strict=True)
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
