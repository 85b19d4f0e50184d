"""A small labeled dataset on disk for the review-export tests (SQLite, a local image folder).

Three PNG images under `<tmp>/store/raw/`, registered by their `file://` URLs and labeled by one
run whose source is that folder:
- `a.png` (40 x 56): three instances, one of them rejected by a reviewer (never exported);
- `sub/b.png` (33 x 47, odd): an instance whose stored RLE is one row taller than the image
  (cvat#9316) with pixels in that extra row, and one whose box reaches past the right border;
- `c.png` (24 x 32): no instances.
`expected` holds, per exported annotation id, the mask, box and area an export must write.
"""

from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from sqlalchemy import select, update
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
from autolabel.storage.db.tables import Annotation, ResultStatus, ReviewStatus
from autolabel.storage.objectstore import ObjectStore
from autolabel.storage.rle import encode_mask
from autolabel.storage.urls import join_url
from autolabel.tasks.resources import ResourceConfig, Resources

WORK_KEY = "d" * 64
SIZES = {"a.png": (40, 56), "sub/b.png": (33, 47), "c.png": (24, 32)}


@dataclass(frozen=True, slots=True)
class Expected:
    """What an export must write for one annotation."""

    mask: npt.NDArray[np.bool_]
    bbox: tuple[float, float, float, float]
    area: float
    category: str
    score: float


@dataclass
class ReviewData:
    """The dataset as stored, and what its exports must hold."""

    database_url: URL
    source: str
    dataset: str
    run_id: int
    image_files: dict[str, Path]
    expected: dict[int, Expected] = field(default_factory=dict)
    rejected_id: int = 0
    oversized_id: int = 0

    def annotations(self) -> dict[int, Annotation]:
        """Every stored annotation row, by id (detached from its session)."""
        engine = make_engine(self.database_url)
        with session_scope(engine) as session:
            rows = {a.id: a for a in session.scalars(select(Annotation))}
            session.expunge_all()
        engine.dispose()
        return rows

    def resources(self, tmp_path: Path, s3: S3Config | None = None) -> Resources:
        """Resources on this database (and on S3 with `s3`)."""
        config = ResourceConfig(
            database_url=self.database_url, s3=s3 or S3Config(), weights_dir=tmp_path
        )
        return Resources(config)


def _png(height: int, width: int, seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _box(mask: npt.NDArray[np.bool_]) -> tuple[float, float, float, float]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def _rect(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> npt.NDArray[np.bool_]:
    mask = np.zeros((height, width), dtype=np.bool_)
    mask[y0:y1, x0:x1] = True
    return mask


def _instances(name: str) -> list[tuple[str, npt.NDArray[np.bool_], tuple[float, ...]]]:
    """(category, stored mask, stored box) of an image's instances."""
    height, width = SIZES[name]
    if name == "a.png":
        blob = np.random.default_rng(3).random((height, width)) > 0.6
        return [
            ("cat", _rect(height, width, 2, 17, 3, 30), _box(_rect(height, width, 2, 17, 3, 30))),
            ("dog", blob, _box(blob)),
            ("dog", _rect(height, width, 30, 40, 40, 56), (40.0, 30.0, 16.0, 10.0)),
        ]
    if name == "sub/b.png":
        tall = _rect(height + 1, width, 20, height + 1, 10, 20)  # one row taller than the image
        wide = _rect(height, width, 5, 15, 40, 47)
        return [("cat", tall, (10.0, 20.0, 10.0, 14.0)), ("dog", wide, (40.0, 5.0, 20.0, 10.0))]
    return []


def make_review_data(
    tmp_path: Path, *, database_url: str | None = None, image_store: ObjectStore | None = None
) -> ReviewData:
    """Write the images, a migrated database (default: SQLite in `tmp_path`) and the stored
    annotations. With `image_store`, the images are also put there and registered by its URLs."""
    raw = tmp_path / "store" / "raw"
    files = {}
    for i, (name, (height, width)) in enumerate(SIZES.items()):
        files[name] = raw / name
        files[name].parent.mkdir(parents=True, exist_ok=True)
        files[name].write_bytes(_png(height, width, i))
        if image_store is not None:
            image_store.put(name, files[name].read_bytes())
    url = make_url(database_url or f"sqlite:///{tmp_path / 'review.sqlite'}")
    engine = make_engine(url)
    upgrade_to_head(engine)
    source = raw.as_uri() if image_store is None else image_store.url
    data = ReviewData(url, source, "review-ds", 0, files)
    with session_scope(engine) as session:
        dataset_id = get_or_create_dataset(session, name=data.dataset)
        cats = ensure_categories(session, dataset_id=dataset_id, names={"cat": None, "dog": None})
        keys = {name: join_url(source, name) for name in files}
        images = [
            ImageIn(storage_key=keys[n], etag="e", width=w, height=h) for n, (h, w) in SIZES.items()
        ]
        ids = register_images(session, dataset_id=dataset_id, images=images)
        data.run_id = create_label_run(
            session, dataset_id=dataset_id, work_key=WORK_KEY, parameters={"source": data.source}
        )
        outcomes = []
        for name in SIZES:
            anns = tuple(
                AnnotationIn(
                    image_id=ids[keys[name]], category_id=cats[cat], instance_index=i,
                    bbox_xywh_px=box, area=float(mask.sum()),  # type: ignore[arg-type]
                    seg_counts=encode_mask(mask)["counts"], seg_height=mask.shape[0],
                    seg_width=mask.shape[1], score=0.5 + 0.1 * i, predicted_iou=0.8,
                    stability_score=0.9, phrase=cat, model_version="sam-test",
                )
                for i, (cat, mask, box) in enumerate(_instances(name))
            )  # fmt: skip
            outcomes.append(
                ImageOutcome(
                    image_id=ids[keys[name]], etag="e", status=ResultStatus.DONE, annotations=anns
                )
            )
        write_image_batch(
            session, dataset_id=dataset_id, run_id=data.run_id, work_key=WORK_KEY, outcomes=outcomes
        )
        stored = session.execute(
            select(Annotation.id, Annotation.image_id, Annotation.instance_index).order_by(
                Annotation.id
            )
        ).all()
        by_image = {v: k for k, v in ids.items()}
        names = {keys[n]: n for n in SIZES}
        for ann_id, image_id, index in stored:
            name = names[by_image[image_id]]
            cat, mask, box = _instances(name)[index]
            height, width = SIZES[name]
            fitted = np.zeros((height, width), dtype=np.bool_)
            fitted[:, :] = mask[:height, :width]
            x, y, w, h = box
            clipped = (x, y, min(x + w, width) - x, min(y + h, height) - y)
            data.expected[ann_id] = Expected(
                fitted, clipped, float(fitted.sum()), cat, 0.5 + 0.1 * index
            )
            if mask.shape != (height, width):
                data.oversized_id = ann_id
        data.rejected_id = min(data.expected)
        session.execute(
            update(Annotation)
            .where(Annotation.id == data.rejected_id)
            .values(review_status=ReviewStatus.REJECTED)
        )
    del data.expected[data.rejected_id]
    engine.dispose()
    return data
