"""Our generator against segment-anything's own SamAutomaticMaskGenerator, same predictor.

segment-anything's generator imports torchvision (batched_nms, box_area, and through its
predictor module the resize transforms), which this project does not install. For this test
only, a stand-in `torchvision` module provides the two box functions (batched_nms from our
box_ops, applied by segment-anything to its own boxes) and is removed afterwards together
with the segment-anything modules imported under it. Both generators drive the fake scene
predictor of test_mask_generator.py (known objects, crops that see whole and cut objects).
Small-region removal is not compared: segment-anything's needs OpenCV.
"""

import importlib
import math
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from autolabel.models import box_ops
from autolabel.models.mask_generator import AutomaticMaskGenerator, MaskGeneratorConfig
from autolabel.storage.rle import encode_mask
from tests.unit.models.test_mask_generator import (
    FakePredictor,
    H,
    SceneObject,
    W,
    box_object,
    coordinate_image,
)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    if boxes.ndim == 1:  # segment-anything's empty crop_boxes tensor
        return boxes
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


@pytest.fixture
def sam_amg_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    importlib.import_module("autolabel.models.efficientvit_sam.sam_modules")
    before = set(sys.modules)
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = box_ops.batched_nms  # type: ignore[attr-defined]
    boxes.box_area = _box_area  # type: ignore[attr-defined]
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize = functional.to_pil_image = None  # type: ignore[attr-defined]
    for name in ("torchvision", "torchvision.ops", "torchvision.transforms"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torchvision.ops.boxes", boxes)
    monkeypatch.setitem(sys.modules, "torchvision.transforms.functional", functional)
    yield importlib.import_module("segment_anything.automatic_mask_generator")
    for name in set(sys.modules) - before:
        if name.startswith("segment_anything"):
            del sys.modules[name]


def _key(record: Any) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    segmentation = record["segmentation"]
    if isinstance(segmentation, np.ndarray):  # ours: a bool mask, encoded by storage's codec
        segmentation = encode_mask(segmentation)
    return (
        segmentation["counts"],
        tuple(record["point_coords"][0]),
        tuple(record["crop_box"]),
    )


def scene() -> list[SceneObject]:
    return [
        box_object(10, 60, 10, 70, iou=0.97),  # big, cut by the inner crop edges
        box_object(20, 30, 20, 30, iou=0.91),  # nested in the big one
        box_object(2, 20, 2, 20, iou=0.95),  # inside the top-left crop
        box_object(30, 70, 75, 110, iou=0.93),  # straddles the crops' vertical border
        box_object(70, 90, 90, 120, iou=0.9, rim=4),  # soft rim: low stability
        box_object(75, 90, 10, 40, iou=0.5),  # low predicted IoU
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"crop_n_layers": 0},
        {"crop_n_layers": 1, "crop_overlap_ratio": 0.1},
        {"crop_n_layers": 1, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
        {"crop_n_layers": 2, "crop_n_points_downscale_factor": 2, "box_nms_thresh": 0.5},
    ],
)
def test_same_records_as_segment_anything(sam_amg_module: Any, settings: dict[str, Any]) -> None:
    settings = {"points_per_side": 8, "stability_score_thresh": 0.9, **settings}
    predictor = FakePredictor(scene())
    sam_amg_module.SamPredictor = lambda _model: predictor
    sam = sam_amg_module.SamAutomaticMaskGenerator(predictor, output_mode="coco_rle", **settings)
    reference = sam.generate(coordinate_image())
    ours = AutomaticMaskGenerator(predictor, MaskGeneratorConfig(**settings)).generate(
        coordinate_image()
    )

    assert len(ours) == len(reference) > 0
    if settings["crop_n_layers"]:  # the crop path is exercised, not only the whole image
        assert any(r["crop_box"] != [0, 0, W, H] for r in ours)
    by_key = {_key(r): r for r in reference}
    assert set(by_key) == {_key(r) for r in ours}
    for record in ours:
        ref = by_key[_key(record)]
        assert record["area"] == ref["area"]
        assert record["predicted_iou"] == pytest.approx(ref["predicted_iou"], abs=1e-6)
        x, y, w, h = ref["bbox"]
        if record["area"] == 0:
            # Empty masks (filters off): segment-anything's stability is 0 / 0 = NaN, ours 0.
            assert math.isnan(ref["stability_score"])
            assert record["stability_score"] == 0.0
            assert record["bbox"] == ref["bbox"] == [0, 0, 0, 0]
            continue
        assert record["stability_score"] == pytest.approx(ref["stability_score"], abs=1e-6)
        # segment-anything's bbox width/height stop at the last pixel's index; ours (as
        # pycocotools) count pixels, one more.
        assert record["bbox"] == [x, y, w + 1, h + 1]
