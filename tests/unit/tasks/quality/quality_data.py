"""A small labeled and reviewed dataset for the quality report tests (SQLite or PostgreSQL).

Five 40 x 60 PNG images under `<tmp>/store/raw/`, registered by their `file://` URLs. Run 1
labeled the first four, run 2 only `v1.png`. Review import 1 covered `r1.png` and `r2.png`:

- `r1.png`: cat A (0.9, accepted), cat B (0.8, rejected), dog C (0.7, corrected to C', IoU
  C/C' = 150/200 = 0.75), and a cat D the reviewer added;
- `r2.png`: dog E (0.6, corrected to E', IoU 60/200 = 0.3), cat F (0.95, accepted);
- `u1.png`: cat (0.5) and `<i>fish</i>` (0.4), never reviewed;
- `missing.png`: dog (0.3), never reviewed, and its file is gone (an unreadable sample);
- `v1.png` (run 2): cat (0.55).

At mask IoU 0.5: cat TP 2 (A, F), FP 1 (B), FN 1 (D); dog TP 1 (C, IoU 0.75), FP 1 (E),
FN 1 (E'); all: precision = recall = 3/5, mean mask IoU (1 + 1 + 0.75) / 3.
"""

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from sqlalchemy import select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from autolabel.storage.config import S3Config
from autolabel.storage.db.bulk import write_image_batch
from autolabel.storage.db.engine import make_engine, session_scope, upgrade_to_head
from autolabel.storage.db.label_runs import create_label_run
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import ensure_categories, get_or_create_dataset
from autolabel.storage.db.repository import register_images as register
from autolabel.storage.db.reviewed_labels import REVIEW_WORK_KEY
from autolabel.storage.db.tables import (
    Annotation,
    ResultStatus,
    ReviewedImage,
    ReviewImport,
    ReviewStatus,
    RunStatus,
)
from autolabel.storage.rle import encode_mask
from autolabel.tasks.resources import ResourceConfig, Resources

HEIGHT, WIDTH = 40, 60
FISH = "<i>fish</i>"
CATEGORIES = ("cat", "dog", FISH)
Rect = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1
# image -> (category, rect, score, review status) of run 1's predictions
RUN1: dict[str, list[tuple[str, Rect, float, ReviewStatus]]] = {
    "r1.png": [
        ("cat", (2, 12, 2, 22), 0.9, ReviewStatus.ACCEPTED),
        ("cat", (2, 12, 30, 50), 0.8, ReviewStatus.REJECTED),
        ("dog", (20, 30, 10, 30), 0.7, ReviewStatus.SUPERSEDED),
    ],
    "r2.png": [
        ("dog", (5, 15, 40, 60), 0.6, ReviewStatus.SUPERSEDED),
        ("cat", (20, 35, 2, 20), 0.95, ReviewStatus.ACCEPTED),
    ],
    "u1.png": [
        ("cat", (5, 25, 5, 25), 0.5, ReviewStatus.UNREVIEWED),
        (FISH, (25, 38, 30, 58), 0.4, ReviewStatus.UNREVIEWED),
    ],
    "missing.png": [("dog", (10, 20, 10, 20), 0.3, ReviewStatus.UNREVIEWED)],
}
RUN2 = {"v1.png": [("cat", (8, 30, 8, 40), 0.55, ReviewStatus.UNREVIEWED)]}
# image -> (category, rect) of the labels a review created: corrected copies, one added object
REVIEW_LABELS: dict[str, list[tuple[str, Rect]]] = {
    "r1.png": [("dog", (20, 30, 15, 30)), ("cat", (30, 38, 40, 58))],
    "r2.png": [("dog", (5, 15, 50, 56))],
}
IMAGES = ("r1.png", "r2.png", "u1.png", "missing.png", "v1.png")


@dataclass
class QualityData:
    """The stored dataset: where it is and what its runs are."""

    database_url: URL
    dataset: str
    run1: int
    run2: int
    image_urls: dict[str, str]

    def resources(self, tmp_path: Path) -> Resources:
        """Resources on this database and the local image folder."""
        config = ResourceConfig(database_url=self.database_url, s3=S3Config(), weights_dir=tmp_path)
        return Resources(config)


def _mask(rect: Rect) -> npt.NDArray[np.bool_]:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.bool_)
    y0, y1, x0, x1 = rect
    mask[y0:y1, x0:x1] = True
    return mask


def _box(rect: Rect) -> tuple[float, float, float, float]:
    y0, y1, x0, x1 = rect
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def _png(seed: int) -> bytes:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([xx * 4, yy * 6, np.full_like(xx, 40 * seed)], axis=-1) % 256
    buffer = BytesIO()
    PILImage.fromarray(rgb.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _annotation(image_id: int, cat_id: int, index: int, rect: Rect, score: float) -> AnnotationIn:
    mask = _mask(rect)
    return AnnotationIn(
        image_id=image_id,
        category_id=cat_id,
        instance_index=index,
        bbox_xywh_px=_box(rect),
        area=float(mask.sum()),
        seg_counts=encode_mask(mask)["counts"],
        seg_height=HEIGHT,
        seg_width=WIDTH,
        score=score,
        predicted_iou=score,
        stability_score=0.95,
        phrase="p",
        model_version="sam-test",
    )


def make_quality_data(tmp_path: Path, *, database_url: str | None = None) -> QualityData:
    """Write the images (all but `missing.png`), a migrated database (default: SQLite in
    `tmp_path`), both runs' predictions and the review."""
    raw = tmp_path / "store" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(IMAGES):
        if name != "missing.png":
            (raw / name).write_bytes(_png(i))
    url = make_url(database_url or f"sqlite:///{tmp_path / 'quality.sqlite'}")
    engine = make_engine(url)
    upgrade_to_head(engine)
    urls = {name: (raw / name).as_uri() for name in IMAGES}
    with session_scope(engine) as session:
        dataset_id = get_or_create_dataset(session, name="quality-ds")
        cats = ensure_categories(session, dataset_id=dataset_id, names=list(CATEGORIES))
        images = [
            ImageIn(storage_key=urls[n], etag="e", width=WIDTH, height=HEIGHT) for n in IMAGES
        ]
        ids = {n: register(session, dataset_id=dataset_id, images=images)[urls[n]] for n in IMAGES}
        runs = []
        for work_key, labeled in (("1" * 64, RUN1), ("2" * 64, RUN2)):
            run_id = create_label_run(
                session,
                dataset_id=dataset_id,
                work_key=work_key,
                parameters={"source": raw.as_uri()},
                status=RunStatus.COMPLETED,
            )
            outcomes = [
                ImageOutcome(
                    image_id=ids[name],
                    etag="e",
                    status=ResultStatus.DONE,
                    annotations=tuple(
                        _annotation(ids[name], cats[c], i, rect, score)
                        for i, (c, rect, score, _) in enumerate(found)
                    ),
                )
                for name, found in labeled.items()
            ]
            write_image_batch(
                session, dataset_id=dataset_id, run_id=run_id, work_key=work_key, outcomes=outcomes
            )
            runs.append(run_id)
        _review(session, dataset_id, cats, ids)
    engine.dispose()
    return QualityData(url, "quality-ds", runs[0], runs[1], urls)


def _review(session: Session, dataset_id: int, cats: dict[str, int], ids: dict[str, int]) -> None:
    """Review import 1 over r1 and r2: statuses of run 1's predictions, and the labels it made."""
    review = ReviewImport(
        dataset_id=dataset_id, tool="label-studio", source="tasks.json", sha256="a" * 64
    )
    session.add(review)
    session.flush()
    for name, labels in REVIEW_LABELS.items():
        session.add(ReviewedImage(import_id=review.id, image_id=ids[name], reviewer="ann"))
        for (*_, status), aid in zip(
            RUN1[name],
            session.execute(
                select(Annotation.id)
                .where(Annotation.image_id == ids[name])
                .order_by(Annotation.id)
            ).scalars(),
            strict=True,
        ):
            session.execute(
                update(Annotation).where(Annotation.id == aid).values(review_status=status)
            )
        for index, (category, rect) in enumerate(labels):
            mask = _mask(rect)
            box = _box(rect)
            session.add(
                Annotation(
                    dataset_id=dataset_id,
                    image_id=ids[name],
                    category_id=cats[category],
                    run_id=None,
                    work_key=REVIEW_WORK_KEY,
                    instance_index=index,
                    bbox_x=box[0],
                    bbox_y=box[1],
                    bbox_w=box[2],
                    bbox_h=box[3],
                    area=float(mask.sum()),
                    seg_counts=encode_mask(mask)["counts"],
                    seg_height=HEIGHT,
                    seg_width=WIDTH,
                    review_status=ReviewStatus.ACCEPTED,
                )
            )
    session.flush()
