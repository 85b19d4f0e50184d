"""A stored dataset with planted uncertain images, for the sampling tests (SQLite or PostgreSQL).

Stored through the labeling write path (`write_image_batch` under one label run whose recorded
thresholds are box 0.3, `forklift` 0.5) and review marking (`mark_annotations`):
- `common_00.png` ... `common_29.png`: two confident `person` masks each (score 0.7, predicted IoU
  0.95, stability 0.97, stored box = the mask's box);
- the planted ones, each with one uncertain annotation (plus confident ones): `low_iou.png`
  (predicted IoU 0.3), `low_stability.png` (stability 0.4, its only annotation),
  `near_threshold.png` (score 0.32 against the run's 0.3), `box_mask.png` (a stored box, as a
  COCO import would keep, that the mask fills 1/16 of), `rare.png` (the only `forklift`, score
  0.9 against its own threshold 0.5);
- `reviewed.png`: the most uncertain mask (predicted IoU 0.05, stability 0.3) beside one a
  reviewer accepted, so it is left out unless reviewed images are included.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import URL, make_url

from autolabel.storage.config import S3Config
from autolabel.storage.db.bulk import write_image_batch
from autolabel.storage.db.engine import make_engine, session_scope, upgrade_to_head
from autolabel.storage.db.label_runs import create_label_run
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import (
    ensure_categories,
    get_or_create_dataset,
    register_images,
)
from autolabel.storage.db.review import mark_annotations
from autolabel.storage.db.tables import ResultStatus, ReviewStatus
from autolabel.storage.rle import encode_mask
from autolabel.tasks.resources import ResourceConfig, Resources

WORK_KEY = "e" * 64
HEIGHT, WIDTH = 32, 32
#: planted image -> the signal that must drive its choice
PLANTED = {
    "low_iou.png": "predicted_iou",
    "low_stability.png": "stability",
    "near_threshold.png": "detector_score",
    "box_mask.png": "box_mask",
    "rare.png": "rarity",
}
REVIEWED = "reviewed.png"
CONFIDENT = {"score": 0.7, "predicted_iou": 0.95, "stability_score": 0.97}
#: (category, signals, stored box or None for the mask's own) of each image's instances
Instance = tuple[str, dict[str, float], tuple[float, float, float, float] | None]


@dataclass
class PlantedSet:
    """The stored dataset: its database, names, run and image URLs."""

    database_url: URL
    dataset: str
    run_id: int
    source: str
    keys: dict[str, str] = field(default_factory=dict)  # image name -> storage URL

    def resources(self, tmp_path: Path) -> Resources:
        """Resources on this database."""
        config = ResourceConfig(database_url=self.database_url, s3=S3Config(), weights_dir=tmp_path)
        return Resources(config)

    def key(self, name: str) -> str:
        """Storage URL of image `name`."""
        return self.keys[name]


def _instances() -> dict[str, list[Instance]]:
    person = ("person", CONFIDENT, None)
    images: dict[str, list[Instance]] = {f"common_{i:02d}.png": [person, person] for i in range(30)}
    images["low_iou.png"] = [("person", CONFIDENT | {"predicted_iou": 0.3}, None), person]
    images["low_stability.png"] = [("person", CONFIDENT | {"stability_score": 0.4}, None)]
    images["near_threshold.png"] = [("person", CONFIDENT | {"score": 0.32}, None), person]
    images["box_mask.png"] = [("person", CONFIDENT, (2.0, 2.0, 24.0, 24.0)), person]
    images["rare.png"] = [("forklift", CONFIDENT | {"score": 0.9}, None), person, person]
    images[REVIEWED] = [
        ("person", CONFIDENT | {"predicted_iou": 0.05, "stability_score": 0.3}, None),
        ("person", CONFIDENT | {"score": 0.95}, None),  # accepted by a reviewer
    ]
    return images


def _mask(index: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.bool_)
    top = 2 + 8 * (index % 3)
    mask[top : top + 6, 2:8] = True  # 6 x 6 at x=2: 1/16 of the planted 24 x 24 box
    return mask


def _annotation(
    image_id: int, index: int, instance: Instance, cats: dict[str, int]
) -> AnnotationIn:
    category, signals, stored_box = instance
    mask = _mask(index)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (
        float(cols[0]),
        float(rows[0]),
        float(cols[-1] + 1 - cols[0]),
        float(rows[-1] + 1 - rows[0]),
    )
    return AnnotationIn(
        image_id=image_id,
        category_id=cats[category],
        instance_index=index,
        bbox_xywh_px=stored_box or box,
        area=float(mask.sum()),
        seg_counts=encode_mask(mask)["counts"],
        seg_height=HEIGHT,
        seg_width=WIDTH,
        phrase=category,
        model_version="sam-test",
        **signals,
    )


def make_planted_set(tmp_path: Path, *, database_url: str | None = None) -> PlantedSet:
    """Store the set in a migrated database (default: SQLite in `tmp_path`)."""
    url = make_url(database_url or f"sqlite:///{tmp_path / 'planted.sqlite'}")
    engine = make_engine(url)
    upgrade_to_head(engine)
    source = (tmp_path / "raw").as_uri()
    thresholds = {"box_threshold": 0.3, "category_box_thresholds": {"forklift": 0.5}}
    planted = PlantedSet(url, "planted-ds", 0, source)
    instances = _instances()
    with session_scope(engine) as session:
        dataset_id = get_or_create_dataset(session, name=planted.dataset)
        cats = ensure_categories(session, dataset_id=dataset_id, names=["person", "forklift"])
        planted.keys = {name: f"{source}/{name}" for name in instances}
        images = [
            ImageIn(storage_key=key, etag="e", width=WIDTH, height=HEIGHT)
            for key in planted.keys.values()
        ]
        ids = register_images(session, dataset_id=dataset_id, images=images)
        planted.run_id = create_label_run(
            session,
            dataset_id=dataset_id,
            work_key=WORK_KEY,
            parameters={"source": source, "thresholds": thresholds},
        )
        outcomes = [
            ImageOutcome(
                image_id=ids[planted.keys[name]],
                etag="e",
                status=ResultStatus.DONE,
                annotations=tuple(
                    _annotation(ids[planted.keys[name]], i, instance, cats)
                    for i, instance in enumerate(image_instances)
                ),
            )
            for name, image_instances in instances.items()
        ]
        write_image_batch(
            session,
            dataset_id=dataset_id,
            run_id=planted.run_id,
            work_key=WORK_KEY,
            outcomes=outcomes,
        )
    mark_annotations(
        engine,
        dataset=planted.dataset,
        status=ReviewStatus.ACCEPTED,
        min_score=0.9,
        image_urls=[planted.keys[REVIEWED]],
    )
    engine.dispose()
    return planted
