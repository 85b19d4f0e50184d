"""Review import on SQLite: our exports, reviewed by script as each tool hands them back, come
back as accepted / corrected / rejected / added decisions with history; nothing stored is lost;
the same review twice changes nothing."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from autolabel.storage.db import queries
from autolabel.storage.db.engine import make_engine, session_scope
from autolabel.storage.db.reviewed_labels import REVIEW_WORK_KEY, reviewed_labels
from autolabel.storage.db.tables import Annotation, ReviewedImage, ReviewEvent, ReviewStatus
from autolabel.storage.rle import encode_mask, rle_iou
from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from autolabel.tasks.review.review_import import ReviewImportRequest, import_review
from tests.unit.tasks.export.review_data import ReviewData, make_review_data
from tests.unit.tasks.review.review_edits import (
    added_cat_mask,
    coco_review,
    cvat_xml,
    label_studio_review,
    mask_of,
    redrawn_dog_mask,
)


@pytest.fixture
def data(tmp_path: Path) -> ReviewData:
    return make_review_data(tmp_path)


def _ids(data: ReviewData) -> tuple[int, int, int, int]:
    """(dog blob, dog rectangle, tall cat, wide dog) annotation ids."""
    blob, rect, tall, wide = sorted(data.expected)
    return blob, rect, tall, wide


def _rows(data: ReviewData) -> dict[int, Annotation]:
    return data.annotations()


def _export(data: ReviewData, tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / fmt
    export_review(
        ReviewExportRequest(
            dataset=data.dataset, format=fmt, output=str(out), local_files_root=str(tmp_path)
        ),
        data.resources(tmp_path),
    )
    return out


def _import(data: ReviewData, tmp_path: Path, fmt: str, path: Path, **kw: Any) -> Any:
    request = ReviewImportRequest(dataset=data.dataset, format=fmt, input=str(path), **kw)
    return import_review(request, data.resources(tmp_path))


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _check_decisions(data: ReviewData, before: dict[int, Annotation], result: Any) -> None:
    blob, rect, tall, wide = _ids(data)
    assert (result.accepted, result.corrected, result.rejected, result.added) == (2, 1, 1, 1)
    rows = _rows(data)
    for aid, old in before.items():  # every original prediction kept, pixels and all
        assert (rows[aid].seg_counts, rows[aid].bbox_x, rows[aid].score) == (
            old.seg_counts,
            old.bbox_x,
            old.score,
        )
    status = {aid: rows[aid].review_status for aid in (blob, rect, tall, wide)}
    assert status == {
        blob: ReviewStatus.ACCEPTED,
        rect: ReviewStatus.SUPERSEDED,
        tall: ReviewStatus.ACCEPTED,
        wide: ReviewStatus.REJECTED,
    }
    new = {aid: r for aid, r in rows.items() if aid not in before}
    assert {r.work_key for r in new.values()} == {REVIEW_WORK_KEY}
    assert all(r.review_status is ReviewStatus.ACCEPTED for r in new.values())
    masks = {
        data_cat: mask_of(r.seg_counts, r.seg_height, r.seg_width)
        for data_cat, r in ((r.category_id, r) for r in new.values())
    }
    assert len(masks) == 2  # one dog (the redrawn rectangle), one cat (added)
    wanted = [encode_mask(redrawn_dog_mask()), encode_mask(added_cat_mask())]
    got = sorted((encode_mask(m) for m in masks.values()), key=lambda r: -rle_iou(r, wanted[0]))
    assert rle_iou(got[0], wanted[0]) == 1.0
    assert rle_iou(got[1], wanted[1]) > 0.8  # a polygon rasterizes to about the same pixels


def test_label_studio_review_round_trip(data: ReviewData, tmp_path: Path) -> None:
    blob, rect, tall, wide = _ids(data)
    before = _rows(data)
    tasks = json.loads((_export(data, tmp_path, "label-studio") / "tasks.json").read_text())
    reviewed = label_studio_review(tasks, rect_id=rect, wide_id=wide)
    path = _write(tmp_path / "ls-export.json", reviewed)
    result = _import(data, tmp_path, "label-studio", path)
    assert (result.images, result.already_imported) == (2, False)  # c.png: nobody annotated it
    _check_decisions(data, before, result)
    engine = make_engine(data.database_url)
    with session_scope(engine) as session:
        events = session.scalars(select(ReviewEvent).order_by(ReviewEvent.id)).all()
        assert {e.reviewer for e in events} == {"ann@example.com, 7".strip(", ")}
        assert {e.decision.value for e in events} == {"accepted", "corrected", "rejected", "added"}
        corrected = next(e for e in events if e.decision.value == "corrected")
        assert (corrected.annotation_id, corrected.item_key) == (rect, f"a{rect}")
        assert corrected.result_id not in before
        assert len(session.scalars(select(ReviewedImage)).all()) == 2
        dataset_id = queries.find_dataset(session, name=data.dataset)
        assert dataset_id is not None
        labels = reviewed_labels(session, dataset_id=dataset_id)
        assert sorted(len(v) for v in labels.values()) == [1, 3]
        accepted = {
            a.annotation_id
            for _, _, instances in queries.iter_images_with_annotations(
                session, dataset_id=dataset_id, accepted_only=True
            )
            for a in instances
        }
        assert accepted == {label.annotation_id for v in labels.values() for label in v}
        assert {blob, tall} <= accepted
        assert rect not in accepted
    engine.dispose()
    rows_after = _rows(data)
    again = _import(data, tmp_path, "label-studio", path)
    assert again.already_imported
    assert again.import_id == result.import_id
    for task in reviewed:  # a re-export of the same review: another file, the same decisions
        for annotation in task["annotations"]:
            annotation["updated_at"] = "2026-12-02T09:00:00Z"
    rerun = _import(data, tmp_path, "label-studio", _write(tmp_path / "ls-2.json", reviewed))
    assert not rerun.already_imported
    assert (rerun.accepted, rerun.corrected, rerun.rejected, rerun.added) == (0, 0, 0, 0)
    assert rerun.unchanged == 4
    assert {k: (r.review_status, r.seg_counts) for k, r in _rows(data).items()} == {
        k: (r.review_status, r.seg_counts) for k, r in rows_after.items()
    }


@pytest.mark.parametrize(("fmt", "keep_ids"), [("cvat", True), ("cvat", False), ("fiftyone", True)])
def test_coco_review_round_trip(data: ReviewData, tmp_path: Path, fmt: str, keep_ids: bool) -> None:
    _, rect, _, wide = _ids(data)
    before = _rows(data)
    out = _export(data, tmp_path, fmt)
    labels = out / ("annotations/instances_default.json" if fmt == "cvat" else "labels.json")
    doc = json.loads(labels.read_text())
    if fmt == "fiftyone" or not keep_ids:  # matched by file_name alone
        for image in doc["images"]:
            image.pop("coco_url", None)
    reviewed = coco_review(doc, rect_id=rect, wide_id=wide, keep_ids=keep_ids)
    path = _write(tmp_path / "review.json", reviewed)
    if not keep_ids:  # matched by overlap alone: the redrawn dog overlaps its prediction at 0.29
        loose = _import(data, tmp_path, fmt, path, match_iou=0.5, reviewer="x")
        assert (loose.corrected, loose.rejected, loose.added) == (0, 2, 2)
        data = make_review_data(tmp_path / "fresh")
        before = _rows(data)
    result = _import(data, tmp_path, fmt, path, match_iou=0.25 if not keep_ids else 0.5)
    assert result.images == 3  # every image of a COCO file is reviewed (c.png: nothing to do)
    _check_decisions(data, before, result)
    again = _import(data, tmp_path, fmt, _write(tmp_path / "again.json", {**reviewed, "info": {}}))
    assert (again.accepted, again.corrected, again.rejected, again.added) == (0, 0, 0, 0)


def test_a_changed_label_is_a_correction(data: ReviewData, tmp_path: Path) -> None:
    blob, *_ = _ids(data)
    doc = json.loads(
        (_export(data, tmp_path, "cvat") / "annotations/instances_default.json").read_text()
    )
    cat = next(c["id"] for c in doc["categories"] if c["name"] == "cat")
    for ann in doc["annotations"]:
        if ann["attributes"]["autolabel_id"] == blob:
            ann["category_id"] = cat
    result = _import(data, tmp_path, "cvat", _write(tmp_path / "r.json", doc))
    assert (result.accepted, result.corrected, result.rejected, result.added) == (3, 1, 0, 0)
    rows = _rows(data)
    assert rows[blob].review_status is ReviewStatus.SUPERSEDED
    copy = next(r for r in rows.values() if r.work_key == REVIEW_WORK_KEY)
    np.testing.assert_array_equal(
        mask_of(copy.seg_counts, copy.seg_height, copy.seg_width),
        mask_of(rows[blob].seg_counts, rows[blob].seg_height, rows[blob].seg_width),
    )


def _rename_first_category(doc: dict[str, Any]) -> None:
    doc["categories"][0]["name"] = "horse"


BAD = {
    "unknown label": ("label", _rename_first_category),
    "unknown image": ("unknown", lambda d: d["images"][0].update(coco_url="s3://x/y.png")),
    "other size": ("size", lambda d: d["images"][0].update(width=d["images"][0]["width"] + 1)),
    "not coco": ("COCO", lambda d: d.pop("images")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_review_files_are_refused_whole(
    data: ReviewData,
    tmp_path: Path,
    case: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.cli_runner import run_in_process

    word, edit = BAD[case]
    doc = json.loads(
        (_export(data, tmp_path, "cvat") / "annotations/instances_default.json").read_text()
    )
    edit(doc)
    path = _write(tmp_path / "bad.json", doc)
    before = _rows(data)
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", data.database_url.render_as_string())
    args = ["import-review", "--dataset", data.dataset, "--format", "cvat", "--input", str(path)]
    code, _, err = run_in_process(args, capsys)
    assert code == 2, err
    assert err.startswith("autolabel: error: ")
    assert err.count("\n") == 1
    assert word in err
    assert {k: r.review_status for k, r in _rows(data).items()} == {
        k: r.review_status for k, r in before.items()
    }
    engine = make_engine(data.database_url)
    with session_scope(engine) as session:
        assert session.scalars(select(ReviewEvent)).all() == []
    engine.dispose()


def test_cvat_xml_review_round_trip(data: ReviewData, tmp_path: Path) -> None:
    _, rect, _, wide = _ids(data)
    before = _rows(data)
    doc = json.loads(
        (_export(data, tmp_path, "cvat") / "annotations/instances_default.json").read_text()
    )
    path = tmp_path / "annotations.xml"
    path.write_bytes(cvat_xml(coco_review(doc, rect_id=rect, wide_id=wide)))
    result = _import(data, tmp_path, "cvat-xml", path)
    assert (result.images, result.skipped_items) == (3, 1)  # c.png's box holds no mask
    _check_decisions(data, before, result)
    again = _import(data, tmp_path, "cvat-xml", path)
    assert again.already_imported


def test_label_studio_polygons_kept_as_exported_are_accepted(
    data: ReviewData, tmp_path: Path
) -> None:
    out = tmp_path / "poly"
    export_review(
        ReviewExportRequest(
            dataset=data.dataset,
            format="label-studio",
            output=str(out),
            local_files_root=str(tmp_path),
            regions="polygon",
        ),
        data.resources(tmp_path),
    )
    assert "<PolygonLabels" in (out / "labeling_config.xml").read_text()
    tasks = json.loads((out / "tasks.json").read_text())
    regions = [r for t in tasks for p in t["predictions"] for r in p["result"]]
    assert {r["type"] for r in regions} == {"polygonlabels"}
    assert len(regions) > len(data.expected)  # the noisy blob has several parts
    for task in tasks:  # the reviewer submits every prediction untouched
        task["annotations"] = [
            {
                "id": 1,
                "completed_by": 2,
                "result": task["predictions"][0]["result"] if task["predictions"] else [],
            }
        ]
    result = _import(data, tmp_path, "label-studio", _write(tmp_path / "ls.json", tasks))
    assert (result.accepted, result.corrected, result.rejected, result.added) == (4, 0, 0, 0)
    assert result.images == 3
