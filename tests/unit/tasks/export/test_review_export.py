"""Review exports end to end on SQLite and a local image folder: each format's structure,
fitted masks and boxes, nothing stored modified, one-line errors, and the CLI command."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import select

from autolabel.storage.brush_rle import decode_brush
from autolabel.storage.db.engine import make_engine
from autolabel.storage.db.tables import Annotation
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.rle import decode_rle
from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from tests.cli_runner import run_in_process
from tests.unit.tasks.export.review_data import SIZES, ReviewData, make_review_data


@pytest.fixture
def data(tmp_path: Path) -> ReviewData:
    return make_review_data(tmp_path)


def _export(data: ReviewData, tmp_path: Path, **options: Any) -> Any:
    request = ReviewExportRequest(dataset=data.dataset, **options)
    return export_review(request, data.resources(tmp_path))


def _stored(data: ReviewData) -> list[tuple[Any, ...]]:
    engine = make_engine(data.database_url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(Annotation).order_by(Annotation.id))]
    engine.dispose()
    return rows


def _coco_mask(coco: COCO, ann: dict[str, Any]) -> np.ndarray:
    rle = coco.annToRLE(ann)
    counts = rle["counts"]
    return decode_rle(
        {
            "size": list(rle["size"]),
            "counts": counts if isinstance(counts, str) else counts.decode(),
        }
    )


def test_label_studio_tasks_hold_fitted_brush_regions(data: ReviewData, tmp_path: Path) -> None:
    before = _stored(data)
    out = tmp_path / "ls"
    root = tmp_path / "store"
    result = _export(
        data, tmp_path, format="label-studio", output=str(out), local_files_root=str(root)
    )
    assert (result.images, result.annotations, result.fitted) == (3, 4, 1)
    assert result.urls_expire_at is not None  # presigned mode (s3:// images would be signed)
    config = ET.parse(out / "labeling_config.xml").getroot()  # noqa: S314 - our own output
    brush = config.find("BrushLabels")
    assert brush is not None
    assert [label.get("value") for label in brush] == ["cat", "dog"]
    tasks = json.loads((out / "tasks.json").read_text())
    assert [t["data"]["image"] for t in tasks] == [
        f"/data/local-files/?d=raw/{name}" for name in SIZES
    ]
    seen = {}
    for task in tasks:
        height, width = SIZES[task["data"]["image"].split("raw/", 1)[1]]
        for pred in task["predictions"]:
            assert pred["model_version"] == "sam-test"
            scores = [r["score"] for r in pred["result"]]
            assert pred["score"] == pytest.approx(sum(scores) / len(scores))
            for region in pred["result"]:
                assert (region["from_name"], region["to_name"]) == (brush.get("name"), "image")
                assert (region["original_height"], region["original_width"]) == (height, width)
                ann_id = int(region["id"].removeprefix("a"))
                assert region["meta"]["autolabel_annotation_id"] == ann_id
                assert region["meta"]["predicted_iou"] == 0.8
                seen[ann_id] = region
                mask = decode_brush(region["value"]["rle"], height=height, width=width)
                np.testing.assert_array_equal(mask, data.expected[ann_id].mask)
                assert region["value"]["brushlabels"] == [data.expected[ann_id].category]
                assert region["score"] == pytest.approx(data.expected[ann_id].score)
    assert set(seen) == set(data.expected)  # the rejected annotation is left out
    assert tasks[2]["predictions"] == []  # c.png: nothing found, still offered for review
    assert _stored(data) == before


def test_cvat_coco_with_images_is_laid_out_for_datumaro(data: ReviewData, tmp_path: Path) -> None:
    before = _stored(data)
    out = tmp_path / "cvat"
    result = _export(data, tmp_path, format="cvat", output=str(out), with_images=True)
    assert (result.images, result.annotations, result.fitted, result.images_copied) == (3, 4, 2, 3)
    path = out / "annotations" / "instances_default.json"
    coco = COCO(str(path))
    for image in coco.dataset["images"]:
        assert not image["file_name"].startswith(("s3:", "file:", "/"))
        assert image["coco_url"] == data.image_files[image["file_name"]].as_uri()
        copy = out / "images" / "default" / image["file_name"]
        assert copy.read_bytes() == data.image_files[image["file_name"]].read_bytes()
    for ann_id, expected in data.expected.items():
        ann = coco.anns[ann_id]
        np.testing.assert_array_equal(_coco_mask(coco, ann), expected.mask)
        assert ann["bbox"] == list(expected.bbox)
        assert ann["area"] == expected.area
        assert ann["attributes"] == {
            "occluded": False, "score": pytest.approx(expected.score), "predicted_iou": 0.8,
            "stability_score": 0.9, "autolabel_id": ann_id,
        }  # fmt: skip
    oversized = coco.anns[data.oversized_id]
    assert oversized["segmentation"]["size"] == [33, 47]
    assert _stored(data) == before


def test_fiftyone_layout_has_scores_and_a_data_map(data: ReviewData, tmp_path: Path) -> None:
    out = tmp_path / "fo"
    result = _export(data, tmp_path, format="fiftyone", output=str(out), run_id=data.run_id)
    assert result.files == [str(out / "labels.json"), str(out / "data_map.json")]
    labels = json.loads((out / "labels.json").read_text())
    data_map = json.loads((out / "data_map.json").read_text())
    assert data_map == {name: str(path) for name, path in data.image_files.items()}
    assert [i["file_name"] for i in labels["images"]] == list(SIZES)
    for ann in labels["annotations"]:
        expected = data.expected[ann["id"]]
        assert (ann["score"], ann["predicted_iou"], ann["stability_score"]) == (
            pytest.approx(expected.score), 0.8, 0.9,
        )  # fmt: skip
        assert "attributes" not in ann
        assert ann["bbox"] == list(expected.bbox)
    copied = _export(
        data, tmp_path, format="fiftyone", output=str(tmp_path / "fo2"), with_images=True
    )
    assert copied.images_copied == 3
    assert (tmp_path / "fo2" / "data" / "sub" / "b.png").is_file()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dataset": "nope"}, "expected an existing dataset, got 'nope'"),
        ({"run_id": 999}, "expected a label run of dataset 'review-ds', got run 999"),
        ({"format": "label-studio"}, "needs the Label Studio local-files document root"),
    ],
)
def test_bad_input_fails_in_one_line(
    data: ReviewData, tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    request = {"dataset": data.dataset, "format": "cvat", "output": str(tmp_path / "o"), **options}
    with pytest.raises(StorageConfigError, match=message):
        export_review(ReviewExportRequest(**request), data.resources(tmp_path))
    assert not (tmp_path / "o" / "tasks.json").exists()


def test_unwritable_output_fails_in_one_line(data: ReviewData, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageConfigError, match="cannot write the export to"):
        _export(data, tmp_path, format="cvat", output=str(blocker / "out"))


def test_cli_exports_and_reports_bad_options_in_one_line(
    data: ReviewData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", data.database_url.render_as_string())
    out = tmp_path / "cli"
    args = ["export-review", "--dataset", data.dataset, "--output", str(out)]
    code, stdout, stderr = run_in_process([*args, "--format", "cvat", "--with-images"], capsys)
    assert code == 0, stderr
    assert "wrote 4 annotations of 3 images for cvat" in stdout
    assert (out / "annotations" / "instances_default.json").is_file()
    for bad, message in [
        (["--format", "yolo"], "format: Input should be 'label-studio', 'cvat' or 'fiftyone'"),
        (["--format", "label-studio", "--with-images"], "cvat and fiftyone formats only"),
        (["--format", "cvat", "--run", "77"], "got run 77"),
    ]:
        code, stdout, stderr = run_in_process([*args, *bad], capsys)
        assert code == 2
        assert stderr.strip().splitlines() == [
            f"autolabel: error: {stderr.split('error: ', 1)[1].strip()}"
        ]
        assert message in stderr
