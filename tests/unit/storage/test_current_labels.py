"""A dataset labeled again (new prompts or thresholds: a new work key) and reviewed: every
dataset-wide reader takes each image's current labels, so a rerun replaces older predictions
instead of adding to them (cvat#7609) and never drops what a reviewer kept or drew
(X-AnyLabeling#1292)."""

import json
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from autolabel.storage.db import queries
from autolabel.storage.db.bulk import write_image_batch
from autolabel.storage.db.coco_export import ExportFilter, write_coco_json
from autolabel.storage.db.label_runs import create_label_run
from autolabel.storage.db.records import AnnotationIn, ImageOutcome
from autolabel.storage.db.review_rows import iter_review_images
from autolabel.storage.db.tables import (
    Annotation,
    Image,
    LabelRun,
    ResultStatus,
    ReviewedImage,
    ReviewImport,
    ReviewStatus,
)
from autolabel.storage.rle import encode_mask
from tests.unit.storage.test_coco import WORK_KEY, H, W, populate

RERUN_KEY = "f" * 64


def _rerun(session: Session, dataset_id: int, image_ids: list[int], etag: str = "e") -> int:
    """A second run under another work key: one annotation per image."""
    session.execute(update(LabelRun).values(status="completed"))  # the first run ended
    run = create_label_run(session, dataset_id=dataset_id, work_key=RERUN_KEY, parameters={})
    category = session.scalar(select(Annotation.category_id).limit(1))
    assert category is not None
    mask = np.zeros((H, W), dtype=np.bool_)
    mask[4:20, 4:30] = True
    outcomes = [
        ImageOutcome(
            image_id=i,
            etag=etag,
            status=ResultStatus.DONE,
            annotations=(
                AnnotationIn(
                    image_id=i,
                    category_id=category,
                    instance_index=0,
                    bbox_xywh_px=(4.0, 4.0, 26.0, 16.0),
                    area=float(mask.sum()),
                    seg_counts=encode_mask(mask)["counts"],
                    seg_height=H,
                    seg_width=W,
                    score=0.9,
                ),
            ),
        )
        for i in image_ids
    ]
    write_image_batch(
        session, dataset_id=dataset_id, run_id=run, work_key=RERUN_KEY, outcomes=outcomes
    )
    return run


def _exported(session: Session, dataset_id: int, tmp_path: Path) -> dict[str, set[int]]:
    """Annotation ids of each dataset-wide reader."""
    out = tmp_path / "coco.json"
    write_coco_json(session, dataset_id=dataset_id, destination=out)
    review = {
        inst.annotation_id
        for _, instances in iter_review_images(session, dataset_id=dataset_id, flt=ExportFilter())
        for inst in instances
    }
    sa1b = {
        a.annotation_id
        for _, _, instances in queries.iter_images_with_annotations(session, dataset_id=dataset_id)
        for a in instances
    }
    coco = {a["id"] for a in json.loads(out.read_text())["annotations"]}
    return {"coco": coco, "review": review, "sa1b": sa1b}


def _keys(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Annotation.id, Annotation.work_key)).all())


def test_a_rerun_replaces_predictions_and_reviewed_labels_stay(
    session: Session, tmp_path: Path
) -> None:
    dataset_id, _ = populate(session, n_images=3)
    image_ids = sorted(session.scalars(select(Image.id)).all())
    first = set(_keys(session))
    assert all(ids == first for ids in _exported(session, dataset_id, tmp_path).values())

    _rerun(session, dataset_id, image_ids)
    keys = _keys(session)
    second = {a for a, k in keys.items() if k == RERUN_KEY}
    assert len(keys) == len(first) + 3  # nothing was deleted
    assert all(ids == second for ids in _exported(session, dataset_id, tmp_path).values())

    # A reviewer covered the first image with the first run's export and kept two predictions.
    kept = sorted(
        session.scalars(
            select(Annotation.id).where(
                Annotation.image_id == image_ids[2], Annotation.work_key == WORK_KEY
            )
        ).all()
    )[:2]
    session.execute(
        update(Annotation).where(Annotation.id.in_(kept)).values(review_status="accepted")
    )
    review = ReviewImport(dataset_id=dataset_id, tool="cvat", source="r.json", sha256="1" * 64)
    session.add(review)
    session.flush()
    session.add(ReviewedImage(import_id=review.id, image_id=image_ids[2]))
    session.flush()
    rerun_on_reviewed = {
        a
        for a in second
        if session.scalar(select(Annotation.image_id).where(Annotation.id == a)) == image_ids[2]
    }
    expected = (second - rerun_on_reviewed) | set(kept)
    assert all(ids == expected for ids in _exported(session, dataset_id, tmp_path).values())

    # The second image's content changes (a new etag): none of its predictions were made for the
    # new content, so none is current until it is labeled again.
    session.execute(update(Image).where(Image.id == image_ids[1]).values(etag="e2"))
    assert all(
        image_ids[1] not in _images(session, ids)
        for ids in _exported(session, dataset_id, tmp_path).values()
    )
    assert session.scalar(select(Annotation.review_status).where(Annotation.id == kept[0])) == (
        ReviewStatus.ACCEPTED
    )


def _images(session: Session, annotation_ids: set[int]) -> set[int]:
    if not annotation_ids:
        return set()
    return set(
        session.scalars(select(Annotation.image_id).where(Annotation.id.in_(annotation_ids))).all()
    )
