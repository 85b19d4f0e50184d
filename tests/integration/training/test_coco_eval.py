"""Evaluation on a COCO layout: GT-box mIoU, and mask mAP from a COCO results file of boxes."""

import json
from pathlib import Path

import numpy as np

from autolabel.models.registry import create_model
from autolabel.storage.sa1b_coco import sa1b_to_coco
from autolabel.tasks.training.evaluate import coco_mask_map, evaluate_images, iter_coco_images
from tests.synthetic import iter_synthetic_samples


def test_coco_layout_metrics_and_map(tmp_path: Path) -> None:
    samples = list(iter_synthetic_samples(3, seed=8, height=48, width=64, max_shapes=3))
    images = tmp_path / "images"
    images.mkdir()
    for s in samples:
        (images / s.record.image.file_name).write_bytes(s.image_bytes)
    doc = sa1b_to_coco([s.record for s in samples])
    ann_path = tmp_path / "instances.json"
    ann_path.write_text(json.dumps(doc))
    dets = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
        for a in doc["annotations"]
    ]
    det_path = tmp_path / "dets.json"
    det_path.write_text(json.dumps(dets))

    model = create_model("efficientvit-sam-test")
    report = evaluate_images(model, iter_coco_images(doc, images), clicks=False)
    assert (report.images_used, report.skipped) == (3, [])
    assert report.metrics["count"] == len(doc["annotations"])
    ap = coco_mask_map(model, ann_path, images, det_path)
    assert set(ap) == {"map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"}
    assert all(np.isfinite(v) for v in ap.values())
    assert 0.0 <= ap["map"] <= ap["ap50"] <= 1.0
