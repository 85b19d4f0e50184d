"""COCO export from the database and import into it (SQLite), checked with pycocotools."""

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autolabel.storage.coco import CocoJsonWriter, read_coco
from autolabel.storage.db.bulk import write_image_batch
from autolabel.storage.db.coco_export import ExportFilter, write_coco_json
from autolabel.storage.db.coco_import import import_coco
from autolabel.storage.db.label_runs import create_label_run
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import (
    ensure_categories,
    get_or_create_dataset,
    register_images,
    set_review_status,
)
from autolabel.storage.db.tables import Annotation, Image, ResultStatus, ReviewStatus
from autolabel.storage.errors import FormatError
from autolabel.storage.rle import decode_rle, encode_masks, rle_areas, rle_bboxes

WORK_KEY = "c" * 64
H, W = 48, 64


def _random_masks(rng: np.random.Generator, n: int) -> np.ndarray:
    stack = np.zeros((H, W, n), dtype=np.uint8, order="F")
    for i in range(n):
        y, x = rng.integers(0, H - 12), rng.integers(0, W - 12)
        h, w = rng.integers(3, 12, size=2)
        stack[y : y + h, x : x + w, i] = 1
    if n > 1:
        stack[:, :, n - 1] = 0
        stack[0, 0, n - 1] = 1  # a 1-pixel mask: its polygon covers no pixel center, stays RLE
    return stack


def populate(
    session: Session,
    *,
    n_images: int = 4,
    seed: int = 0,
    keys: Sequence[str] | None = None,
    source: str | None = None,
) -> tuple[int, int]:
    """A dataset with `n_images` labeled images (stored under `keys`, default `a/{i}.jpg`),
    labeled by a run whose parameters name `source`; returns (dataset_id, run_id)."""
    rng = np.random.default_rng(seed)
    dataset_id = get_or_create_dataset(session, name=f"ds{seed}")
    cats = ensure_categories(session, dataset_id=dataset_id, names={"cat": "animal", "dog": None})
    keys = keys or [f"a/{i}.jpg" for i in range(n_images)]
    ids = register_images(
        session,
        dataset_id=dataset_id,
        images=[ImageIn(storage_key=k, etag="e", width=W, height=H) for k in keys],
    )
    parameters = {} if source is None else {"source": source}
    run = create_label_run(session, dataset_id=dataset_id, work_key=WORK_KEY, parameters=parameters)
    outcomes = []
    for n, image_id in enumerate(sorted(ids.values())):
        rles = encode_masks(_random_masks(rng, n + 1))
        boxes, areas = rle_bboxes(rles), rle_areas(rles)
        anns = tuple(
            AnnotationIn(
                image_id=image_id, category_id=cats["cat" if i % 2 else "dog"], instance_index=i,
                bbox_xywh_px=tuple(boxes[i].tolist()), area=float(areas[i]),
                seg_counts=r["counts"], seg_height=H, seg_width=W, score=0.2 + 0.1 * i,
                predicted_iou=0.9, stability_score=0.95, phrase="cat", model_version="m1",
            )
            for i, r in enumerate(rles)
        )  # fmt: skip
        outcomes.append(
            ImageOutcome(image_id=image_id, etag="e", status=ResultStatus.DONE, annotations=anns)
        )
    write_image_batch(
        session, dataset_id=dataset_id, run_id=run, work_key=WORK_KEY, outcomes=outcomes
    )
    return dataset_id, run


def ann_mask(coco: COCO, ann: dict[str, Any]) -> np.ndarray:
    """The annotation's mask via pycocotools' annToRLE (its decode warns under numpy 2)."""
    rle = coco.annToRLE(ann)
    counts = rle["counts"]
    return decode_rle(
        {
            "size": list(rle["size"]),
            "counts": counts if isinstance(counts, str) else counts.decode(),
        }
    )


def evaluate_against_itself(path: Path, iou_type: str) -> float:
    """AP of the file's own annotations used as detections (score 1) against it as ground truth."""
    gt = COCO(str(path))
    dets = [dict(a, score=1.0) for a in gt.dataset["annotations"]]
    for det in dets:
        det.pop("id")
    evaluator = COCOeval(gt, gt.loadRes(dets), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0])


def test_rle_export_loads_in_pycocotools_and_scores_perfectly(
    session: Session, tmp_path: Path
) -> None:
    dataset_id, _run = populate(session)
    out = tmp_path / "out" / "coco.json"
    stats = write_coco_json(session, dataset_id=dataset_id, destination=out)
    assert (stats.n_images, stats.n_annotations, stats.n_categories) == (4, 10, 2)
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 10
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cat", "dog"}
    stored = session.execute(select(Annotation.id, Annotation.seg_counts)).all()
    for ann_id, counts in stored:
        np.testing.assert_array_equal(
            ann_mask(coco, coco.anns[ann_id]), decode_rle({"size": [H, W], "counts": counts})
        )
    assert evaluate_against_itself(out, "segm") == pytest.approx(1.0)
    assert evaluate_against_itself(out, "bbox") == pytest.approx(1.0)
    assert not list(tmp_path.joinpath("out").glob("*.tmp"))


def test_polygon_export_loads_and_falls_back_to_rle_for_tiny_masks(
    session: Session, tmp_path: Path
) -> None:
    dataset_id, _run = populate(session)
    out = tmp_path / "poly.json"
    write_coco_json(session, dataset_id=dataset_id, destination=out, segmentation="polygon")
    coco = COCO(str(out))
    kinds = {type(a["segmentation"]).__name__ for a in coco.dataset["annotations"]}
    assert kinds == {"list", "dict"}
    for ann in coco.dataset["annotations"]:
        if isinstance(ann["segmentation"], list):
            assert all(len(p) >= 6 for p in ann["segmentation"])
    assert evaluate_against_itself(out, "segm") == pytest.approx(1.0)


def test_export_filters_by_score_and_run(session: Session, tmp_path: Path) -> None:
    dataset_id, _run = populate(session)
    other_dataset, other_run = populate(session, seed=1)
    out = tmp_path / "f.json"
    write_coco_json(
        session, dataset_id=dataset_id, destination=out, flt=ExportFilter(min_score=0.35)
    )
    scores = [a["score"] for a in json.loads(out.read_text())["annotations"]]
    assert scores
    assert min(scores) >= 0.35
    write_coco_json(
        session, dataset_id=dataset_id, destination=out, flt=ExportFilter(run_id=other_run)
    )
    assert json.loads(out.read_text())["annotations"] == []
    write_coco_json(
        session, dataset_id=other_dataset, destination=out, flt=ExportFilter(run_id=other_run)
    )
    assert len(json.loads(out.read_text())["annotations"]) == 10


def test_rejected_annotations_are_left_out_unless_asked(session: Session, tmp_path: Path) -> None:
    dataset_id, _run = populate(session)
    ids = session.execute(select(Annotation.id).order_by(Annotation.id)).scalars().all()
    assert set_review_status(session, annotation_ids=ids[:3], status=ReviewStatus.REJECTED) == 3
    set_review_status(session, annotation_ids=ids[3:4], status=ReviewStatus.ACCEPTED)
    out = tmp_path / "r.json"
    write_coco_json(session, dataset_id=dataset_id, destination=out)
    kept = {a["id"] for a in json.loads(out.read_text())["annotations"]}
    assert kept == set(ids[3:])
    write_coco_json(
        session, dataset_id=dataset_id, destination=out, flt=ExportFilter(include_rejected=True)
    )
    assert len(json.loads(out.read_text())["annotations"]) == len(ids)


def test_import_roundtrip_is_idempotent(session: Session, tmp_path: Path) -> None:
    dataset_id, _run = populate(session)
    first = tmp_path / "first.json"
    write_coco_json(session, dataset_id=dataset_id, destination=first)
    stats = import_coco(session, dataset_name="copy", coco=first, source="first")
    assert stats.n_annotations_inserted == 10
    again = import_coco(session, dataset_name="copy", coco=first, source="first")
    assert again.dataset_id == stats.dataset_id
    count = select(func.count()).where(Annotation.dataset_id == stats.dataset_id)
    assert session.execute(count).scalar_one() == 10
    second = tmp_path / "second.json"
    write_coco_json(session, dataset_id=stats.dataset_id, destination=second)
    a, b = json.loads(first.read_text()), json.loads(second.read_text())

    def by_key(doc: dict[str, Any]) -> dict[tuple[str, int], tuple[Any, ...]]:
        names = {c["id"]: c["name"] for c in doc["categories"]}
        files = {im["id"]: im["file_name"] for im in doc["images"]}
        return {
            (files[x["image_id"]], i): (names[x["category_id"]], x["bbox"], x["segmentation"])
            for i, x in enumerate(doc["annotations"])
        }

    assert by_key(a) == by_key(b)


URL_KEYS = [
    "s3://bucket/raw/a/0.jpg",
    "s3://bucket/raw/a/1.jpg",
    "s3://bucket/raw/b.jpg",
    "s3://bucket/other/x.jpg",
]


def test_export_names_images_relative_to_the_dataset_source(
    session: Session, tmp_path: Path
) -> None:
    dataset_id, _run = populate(session, keys=URL_KEYS, source="s3://bucket/raw/")
    out = tmp_path / "named.json"
    write_coco_json(session, dataset_id=dataset_id, destination=out)
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 10
    images = sorted(coco.dataset["images"], key=lambda im: im["id"])
    assert [im["file_name"] for im in images] == [
        "a/0.jpg",
        "a/1.jpg",
        "b.jpg",
        "bucket/other/x.jpg",
    ]
    assert [im["coco_url"] for im in images] == URL_KEYS
    write_coco_json(session, dataset_id=dataset_id, destination=out, image_root="s3://bucket")
    names = [im["file_name"] for im in json.loads(out.read_text())["images"]]
    assert names == ["raw/a/0.jpg", "raw/a/1.jpg", "raw/b.jpg", "other/x.jpg"]


def _stored(session: Session, dataset_id: int) -> list[tuple[str, int]]:
    """(storage key, number of annotations) of the dataset's images, by key."""
    rows = session.execute(
        select(Image.storage_key, func.count(Annotation.id))
        .outerjoin(Annotation, Annotation.image_id == Image.id)
        .where(Image.dataset_id == dataset_id)
        .group_by(Image.storage_key)
        .order_by(Image.storage_key)
    )
    return [(key, n) for key, n in rows]


def test_import_maps_relative_names_back_to_storage_urls(session: Session, tmp_path: Path) -> None:
    dataset_id, _run = populate(session, keys=URL_KEYS, source="s3://bucket/raw/")
    original = _stored(session, dataset_id)
    out = tmp_path / "named.json"
    write_coco_json(session, dataset_id=dataset_id, destination=out)
    doc = json.loads(out.read_text())
    copy = import_coco(session, dataset_name="copy", coco=out, source="named")
    assert _stored(session, copy.dataset_id) == original  # every annotation once, same keys
    legacy = dict(doc, images=[dict(im, file_name=im["coco_url"]) for im in doc["images"]])
    del legacy["images"][0]["coco_url"]
    old = import_coco(session, dataset_name="old", coco=legacy, source="legacy")
    assert _stored(session, old.dataset_id) == original
    under_root = [im for im in doc["images"] if not im["file_name"].startswith("bucket/")]
    bare = dict(doc, images=[{k: v for k, v in im.items() if k != "coco_url"} for im in under_root])
    rooted = import_coco(
        session, dataset_name="rooted", coco=bare, source="bare", image_root="s3://bucket/raw/"
    )
    assert _stored(session, rooted.dataset_id) == original[1:]  # x.jpg (sorted first) left out
    before = session.execute(select(func.count(Image.id))).scalar_one()
    import_coco(session, dataset_name="ds0", coco=out, source="back")
    assert session.execute(select(func.count(Image.id))).scalar_one() == before


def test_import_polygons_uncompressed_rle_and_crowd(session: Session, tmp_path: Path) -> None:
    doc = {
        "images": [{"id": 7, "file_name": "x.png", "width": 10, "height": 8}],
        "categories": [{"id": 3, "name": "box", "supercategory": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0,
             "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]], "area": 20.0, "bbox": [1, 1, 5, 4]},
            {"id": 2, "image_id": 7, "category_id": 3, "iscrowd": 1,
             "segmentation": {"size": [8, 10], "counts": [40, 8, 32]}},
        ],
    }  # fmt: skip
    stats = import_coco(session, dataset_name="gt", coco=doc, source="gt")
    assert stats.n_annotations_inserted == 2
    out = tmp_path / "gt.json"
    write_coco_json(session, dataset_id=stats.dataset_id, destination=out)
    coco = COCO(str(out))
    anns = sorted(coco.dataset["annotations"], key=lambda a: a["iscrowd"])
    assert anns[0]["area"] == 20.0
    assert anns[1]["iscrowd"] == 1
    assert anns[1]["area"] == 8.0
    assert ann_mask(coco, anns[1]).sum() == 8
    assert ann_mask(coco, anns[0])[2, 3] == 1


def test_import_rejects_malformed_documents(session: Session, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []')
    with pytest.raises(FormatError, match=r"bad\.json"):
        import_coco(session, dataset_name="x", coco=bad, source="bad")
    with pytest.raises(FormatError, match="annotations"):
        read_coco({"images": [], "categories": []})
    doc = {
        "images": [{"id": 1, "file_name": "a", "width": 4, "height": 4}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 9, "segmentation": [[0, 0, 3, 0, 3, 3]]}
        ],
    }
    with pytest.raises(FormatError, match="category_id"):
        import_coco(session, dataset_name="x", coco=doc, source="bad")


def test_writer_streams_valid_json_and_enforces_order() -> None:
    buf = io.StringIO()
    with CocoJsonWriter(buf, categories=[{"id": 1, "name": "a"}]) as writer:
        writer.write_images([{"id": 1, "file_name": 'a\\b"c.jpg', "width": 2, "height": 2}])
        writer.write_annotations([])
        with pytest.raises(RuntimeError, match="images before annotations"):
            writer.write_images([])
    doc = json.loads(buf.getvalue())
    assert doc["images"][0]["file_name"] == 'a\\b"c.jpg'
    assert doc["annotations"] == []
