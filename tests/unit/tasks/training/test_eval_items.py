"""Evaluation skips bad items one by one (SA-1B and COCO layouts) and reports each by name."""

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.models.registry import create_model
from autolabel.storage.sa1b import BadSample
from autolabel.storage.sa1b_coco import sa1b_to_coco
from autolabel.tasks.training.evaluate import (
    EvalImage,
    evaluate_images,
    iter_coco_images,
    iter_sa1b_images,
)
from tests.synthetic import write_with_bad_rles


def _png(height: int, width: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_sa1b_images_skip_bad_records_and_undecodable_or_mis_sized_images(tmp_path: Path) -> None:
    write_with_bad_rles(tmp_path, count=5, bad_ids={2}, seed=1)
    (tmp_path / "sa_3.png").write_bytes(b"not an image")
    (tmp_path / "sa_4.png").write_bytes(_png(10, 10))
    items = list(iter_sa1b_images(str(tmp_path)))
    assert [i.image_id for i in items if isinstance(i, EvalImage)] == [1, 5]
    bad = {Path(i.name).name: i.reason for i in items if isinstance(i, BadSample)}
    assert list(bad) == ["sa_2.json", f"{tmp_path.name}:sa_3.png", f"{tmp_path.name}:sa_4.png"]
    assert "expected an RLE of size [48, 64]" in bad["sa_2.json"]
    assert (
        "expected a 48x64 image (its record's size), got 10x10" in bad[f"{tmp_path.name}:sa_4.png"]
    )


def test_coco_images_skip_missing_undecodable_and_malformed_items(tmp_path: Path) -> None:
    samples = write_with_bad_rles(tmp_path / "src", count=4, bad_ids=set(), seed=1)
    doc = sa1b_to_coco([s.record for s in samples])
    images = tmp_path / "images"
    images.mkdir()
    for s in samples[:3]:  # sa_4.png is missing
        (images / s.record.image.file_name).write_bytes(s.image_bytes)
    (images / "sa_2.png").write_bytes(b"not an image")
    first_of_3 = next(a for a in doc["annotations"] if a["image_id"] == 3)
    first_of_3["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # a polygon of two points
    items = list(iter_coco_images(json.loads(json.dumps(doc)), images))
    assert [i.image_id for i in items if isinstance(i, EvalImage)] == [1]
    bad = [i for i in items if isinstance(i, BadSample)]
    assert [b.name for b in bad] == [str(images / f"sa_{k}.png") for k in (2, 3, 4)]
    assert "InvalidImageError" in bad[0].reason
    assert ">= 3" in bad[1].reason
    assert "FileNotFoundError" in bad[2].reason


def test_evaluate_images_logs_and_counts_each_skipped_item(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_with_bad_rles(tmp_path, count=4, bad_ids={2}, seed=1)
    model = create_model("efficientvit-sam-test")
    with caplog.at_level(logging.WARNING):
        report = evaluate_images(model, iter_sa1b_images(str(tmp_path)), clicks=False)
    assert report.images_used == 3
    assert [Path(b.name).name for b in report.skipped] == ["sa_2.json"]
    assert report.images_skipped == 1
    assert report.metrics["count"] > 0
    assert "sa_2.json" in caplog.text
    first = BadSample("a", "why a")
    limited = evaluate_images(model, iter([first, *iter_sa1b_images(str(tmp_path))]), max_images=1)
    assert limited.images_used == 1
    assert [b.name for b in limited.skipped] == ["a"]  # reading stopped before sa_2
