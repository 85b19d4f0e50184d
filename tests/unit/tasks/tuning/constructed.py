"""A constructed reviewed sample with known-good thresholds, built from detector candidates.

Every image holds, in cells of a grid that never overlap, two true objects and two distractors of
category "a" and of category "b". True objects of "a" have text scores >= 0.62 and its distractors
<= 0.55; true objects of "b" have text scores >= 0.20 (some below the default 0.25) and its
distractors <= 0.18. Box scores (the best token probability) are at least the text score, and
distractors' box scores are as high as the true objects', so only the text threshold separates.
Known-good text thresholds: "a" 0.60, "b" 0.20.
"""

from dataclasses import dataclass

import numpy as np
import torch

from autolabel.models.detection import Candidates, DetectionConfig, Detections, finalize_detections
from autolabel.models.prompts import PromptSet
from autolabel.tasks.tuning.overlap import ReviewedObject

PROMPT = PromptSet.from_categories(["a", "b"])
IMAGE_HW = (480, 640)
CELL = 60
TEXT_RANGES = {
    ("a", True): (0.62, 0.90),
    ("a", False): (0.36, 0.55),
    ("b", True): (0.20, 0.45),
    ("b", False): (0.05, 0.18),
}


@dataclass(frozen=True)
class ConstructedImage:
    image_id: int
    candidates: Candidates
    reviewed: list[ReviewedObject]


def _cell(index: int) -> tuple[float, float, float, float]:
    row, col = divmod(index, 7)
    x, y = 20 + 88 * col, 20 + 88 * row
    return (float(x), float(y), float(x + CELL), float(y + CELL))


def constructed_images(n_images: int = 30, seed: int = 0) -> list[ConstructedImage]:
    """`n_images` images of candidates (unfiltered) and reviewed labels."""
    rng = np.random.default_rng(seed)
    images = []
    for image_id in range(n_images):
        boxes, box_scores, text_scores, phrases, reviewed = [], [], [], [], []
        slot = 0
        for category in ("a", "b"):
            for true in (True, True, False, False):
                cell = _cell(slot)
                slot += 1
                low, high = TEXT_RANGES[(category, true)]
                text = float(rng.uniform(low, high))
                jitter = rng.uniform(-3, 3, size=4)
                boxes.append(np.array(cell) + jitter)
                text_scores.append(text)
                box_scores.append(min(1.0, text + float(rng.uniform(0.05, 0.35))))
                phrases.append(PROMPT.categories.index(category))
                if true:
                    reviewed.append(ReviewedObject(category=category, box_xyxy_px=cell))
        n = len(boxes)
        candidates = Candidates(
            boxes_xyxy_px=torch.tensor(np.array(boxes), dtype=torch.float32),
            box_scores=torch.tensor(box_scores, dtype=torch.float32),
            phrase_indices=torch.tensor(phrases, dtype=torch.long),
            phrase_scores=torch.tensor(text_scores, dtype=torch.float32),
            token_scores=tuple(torch.tensor([s]) for s in text_scores[:n]),
        )
        images.append(ConstructedImage(image_id, candidates, reviewed))
    return images


def detect(image: ConstructedImage, config: DetectionConfig) -> Detections:
    """The pipeline's post-processing of the image's candidates under `config`."""
    return finalize_detections(image.candidates, PROMPT, config, IMAGE_HW)


def true_min_box_score(images: list[ConstructedImage], category: str) -> float:
    """The lowest box score of a true object of `category` (its best possible box threshold)."""
    index = PROMPT.categories.index(category)
    lows = []
    for image in images:
        c = image.candidates
        text_low = TEXT_RANGES[(category, True)][0]
        true = (c.phrase_indices == index) & (c.phrase_scores >= text_low)
        lows.append(float(c.box_scores[true].min()))
    return min(lows)
