"""Review exports read by the real tools' code, on PostgreSQL: datumaro (CVAT's format library)
reads our CVAT COCO export with images; Label Studio's presigned image URLs open on S3 (moto)."""

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from autolabel.storage.config import S3Config
from autolabel.storage.objectstore import open_store
from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
from tests.conftest import PostgresDatabases
from tests.unit.tasks.export.review_data import SIZES, make_review_data

pytestmark = pytest.mark.integration


# datumaro decodes masks with pycocotools, whose decode warns under numpy 2 (storage/rle.py).
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_datumaro_reads_our_cvat_export_without_loss(
    postgres_databases: PostgresDatabases, tmp_path: Path
) -> None:
    dm = pytest.importorskip(
        "datumaro", reason="datumaro is not installed (pip install datumaro==1.13.12)"
    )
    data = make_review_data(tmp_path, database_url=postgres_databases.create())
    out = tmp_path / "cvat"
    request = ReviewExportRequest(
        dataset=data.dataset, format="cvat", output=str(out), with_images=True
    )
    result = export_review(request, data.resources(tmp_path))
    assert (result.images, result.annotations, result.images_copied) == (3, 4, 3)

    dataset = dm.Dataset.import_from(str(out), "coco_instances")
    items = {item.id: item for item in dataset}
    assert sorted(items) == sorted(name.rsplit(".", 1)[0] for name in SIZES)
    masks, boxes = {}, {}
    for item_id, item in items.items():
        name = next(n for n in SIZES if n.rsplit(".", 1)[0] == item_id)
        assert item.media.has_data
        assert item.media.data.shape[:2] == SIZES[name]
        for ann in item.annotations:
            if ann.type == dm.AnnotationType.mask:
                masks[ann.id] = ann.image.astype(bool)
            elif ann.type == dm.AnnotationType.bbox:
                boxes[ann.id] = ann
    assert set(masks) == set(boxes) == set(data.expected)
    for ann_id, expected in data.expected.items():
        np.testing.assert_array_equal(masks[ann_id], expected.mask)
        box = boxes[ann_id]
        assert tuple(box.get_bbox()) == expected.bbox
        assert box.attributes["score"] == pytest.approx(expected.score)
        assert box.attributes["predicted_iou"] == pytest.approx(0.8)
    assert masks[data.oversized_id].shape == SIZES["sub/b.png"]  # cvat#9316: fitted

    # CVAT for images 1.1 XML (what CVAT exports) keeps masks, boxes, scores and our ids.
    dataset.export(str(tmp_path / "xml"), "cvat", save_media=True, allow_undeclared_attrs=True)
    again = dm.Dataset.import_from(str(tmp_path / "xml"), "cvat")
    back = {}
    for item in again:
        for ann in item.annotations:
            ann_id = int(ann.attributes["autolabel_id"])
            if ann.type == dm.AnnotationType.mask:
                back[ann_id] = ann.image.astype(bool)
            else:
                assert tuple(ann.get_bbox()) == data.expected[ann_id].bbox
    assert set(back) == set(data.expected)
    for ann_id, mask in back.items():
        np.testing.assert_array_equal(mask, data.expected[ann_id].mask)


def test_label_studio_presigned_urls_open_the_images_and_exports_land_in_s3(
    postgres_databases: PostgresDatabases, s3_bucket: str, s3_env: str, tmp_path: Path
) -> None:
    s3 = S3Config(endpoint_url=s3_env, region="us-east-1", path_style=True)
    images = open_store(f"s3://{s3_bucket}/raw", s3=s3)
    data = make_review_data(tmp_path, database_url=postgres_databases.create(), image_store=images)
    output = f"s3://{s3_bucket}/review/ls"
    request = ReviewExportRequest(
        dataset=data.dataset, format="label-studio", output=output, expiry_seconds=600
    )
    result = export_review(request, data.resources(tmp_path, s3))
    assert result.files == [f"{output}/tasks.json", f"{output}/labeling_config.xml"]
    tasks = json.loads(open_store(output, s3=s3).get("tasks.json"))
    for task, (name, path) in zip(tasks, data.image_files.items(), strict=True):
        assert task["data"]["autolabel_storage_url"] == f"s3://{s3_bucket}/raw/{name}"
        url = task["data"]["image"]
        assert url.startswith(s3_env)
        assert "X-Amz-Expires=600" in url
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - moto's http
            assert response.read() == path.read_bytes()
    raw = ReviewExportRequest(
        dataset=data.dataset, format="label-studio", output=output, url_mode="s3"
    )
    export_review(raw, data.resources(tmp_path, s3))
    tasks = json.loads(open_store(output, s3=s3).get("tasks.json"))
    assert [t["data"]["image"] for t in tasks] == [f"s3://{s3_bucket}/raw/{n}" for n in SIZES]
