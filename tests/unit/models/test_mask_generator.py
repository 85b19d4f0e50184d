"""AutomaticMaskGenerator on a fake predictor whose masks are known objects of a scene.

The fake predictor works like SAM's: prompts arrive in the 1024-long-side frame of the image
last given to `set_image` (a crop, when crops are on). Pixels of the test images encode their
own coordinates (red = x, green = y), so the fake knows where a crop lies in the scene.
"""

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest
import torch
from pycocotools import mask as coco_mask

from autolabel.models import mask_ops
from autolabel.models.errors import InvalidInputError
from autolabel.models.mask_generator import (
    AutomaticMaskGenerator,
    MaskGeneratorConfig,
    MaskRecord,
)
from autolabel.storage.rle import encode_mask

H, W = 96, 128


@dataclass
class SceneObject:
    """An object: logits over the whole scene (> 0 inside) and the IoU the model predicts."""

    logits: torch.Tensor
    iou: float


def box_object(y0: int, y1: int, x0: int, x1: int, iou: float = 0.95, rim: int = 0) -> SceneObject:
    """A crisp rectangle (logit 8); `rim` adds a soft border of logit 0.5 (lowers stability)."""
    logits = torch.full((H, W), -8.0)
    if rim:
        logits[max(0, y0 - rim) : y1 + rim, max(0, x0 - rim) : x1 + rim] = 0.5
    logits[y0:y1, x0:x1] = 8.0
    return SceneObject(logits, iou)


class _Transform:
    def __init__(self, owner: "FakePredictor") -> None:
        self.owner = owner

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        scale = 1024 / max(original_size)
        return coords.astype(np.float64) * scale


@dataclass
class FakePredictor:
    """Returns, for each point, up to three scene objects under it (smallest first)."""

    objects: list[SceneObject]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    calls: int = 0
    seen_points_image_frame: list[tuple[float, float]] = field(default_factory=list)
    image: npt.NDArray[np.uint8] | None = None
    # segment-anything's generator reads predictor.model.mask_threshold.
    model: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(mask_threshold=0.0))

    @property
    def transform(self) -> _Transform:
        return _Transform(self)

    def set_image(self, image: npt.NDArray[np.uint8]) -> None:
        self.image = image

    def reset_image(self) -> None:
        self.image = None

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert self.image is not None
        assert point_coords is not None
        assert point_labels is not None
        assert point_coords.shape[1:] == (1, 2)
        assert (point_labels == 1).all()
        assert return_logits
        assert multimask_output
        self.calls += 1
        h, w = self.image.shape[:2]
        x0, y0 = int(self.image[0, 0, 0]), int(self.image[0, 0, 1])
        points = point_coords[:, 0].double() * max(h, w) / 1024 + torch.tensor([x0, y0])
        masks = torch.full((len(points), 3, h, w), -8.0)
        ious = torch.zeros(len(points), 3)
        for i, (px, py) in enumerate(points.tolist()):
            self.seen_points_image_frame.append((px, py))
            under = [o for o in self.objects if o.logits[int(py), int(px)] > 0]
            under.sort(key=lambda o: int((o.logits > 0).sum()))
            for slot, obj in enumerate(under[:3]):
                masks[i, slot] = obj.logits[y0 : y0 + h, x0 : x0 + w]
                ious[i, slot] = obj.iou
        return masks, ious, torch.zeros(len(points), 3, 16, 16)


def coordinate_image() -> npt.NDArray[np.uint8]:
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)


def run(objects: list[SceneObject], **config: object) -> tuple[list[MaskRecord], FakePredictor]:
    predictor = FakePredictor(objects)
    cfg = MaskGeneratorConfig(**{"points_per_side": 8, **config})  # type: ignore[arg-type]
    return AutomaticMaskGenerator(predictor, cfg).generate(coordinate_image()), predictor


def test_grid_points_reach_predictor_in_batches() -> None:
    _, predictor = run([], points_per_side=4, points_per_batch=5)
    assert predictor.calls == math.ceil(16 / 5)
    expected = mask_ops.build_point_grid(4) * np.array([W, H])
    np.testing.assert_allclose(predictor.seen_points_image_frame, expected, atol=1e-4)


def test_each_object_found_once_with_sa1b_fields() -> None:
    big = box_object(10, 60, 10, 70, iou=0.97)
    small = box_object(70, 90, 90, 120, iou=0.93)
    records, _ = run([big, small])
    assert len(records) == 2  # many grid points hit each object; NMS keeps one of each
    assert [r["predicted_iou"] for r in records] == pytest.approx([0.97, 0.93])
    for record, obj in zip(records, [big, small], strict=True):
        expected = (obj.logits > 0).numpy()
        np.testing.assert_array_equal(record["segmentation"], expected)
        assert record["area"] == expected.sum()
        ys, xs = np.nonzero(expected)
        assert record["bbox"] == [
            xs.min(),
            ys.min(),
            xs.max() + 1 - xs.min(),
            ys.max() + 1 - ys.min(),
        ]
        ((px, py),) = record["point_coords"]
        assert expected[int(py), int(px)]
        assert record["stability_score"] == 1.0
        assert record["crop_box"] == [0, 0, W, H]


def test_predicted_iou_threshold() -> None:
    good = box_object(10, 60, 10, 70, iou=0.95)
    poor = box_object(70, 90, 90, 120, iou=0.5)
    records, _ = run([good, poor], pred_iou_thresh=0.88)
    assert [r["predicted_iou"] for r in records] == pytest.approx([0.95])
    records, _ = run([good, poor], pred_iou_thresh=0.4)
    assert len(records) == 2


def test_stability_threshold() -> None:
    crisp = box_object(10, 40, 10, 40)
    soft = box_object(60, 80, 60, 100, rim=6)  # loose mask much larger than tight mask
    records, _ = run([crisp, soft], stability_score_thresh=0.9)
    assert len(records) == 1
    assert records[0]["area"] == 30 * 30
    records, _ = run([crisp, soft], stability_score_thresh=0.0)
    assert sorted(r["stability_score"] for r in records) == pytest.approx([20 * 40 / (32 * 52), 1])


def test_box_nms_keeps_best_of_overlapping_masks() -> None:
    a = box_object(10, 60, 10, 70, iou=0.92)
    b = box_object(12, 62, 10, 70, iou=0.96)  # box IoU with a: 48 * 60 / (52 * 60) = 0.92
    records, _ = run([a, b])
    assert [r["predicted_iou"] for r in records] == pytest.approx([0.96])
    records, _ = run([a, b], box_nms_thresh=0.95)
    assert len(records) == 2


def test_min_area_fills_holes_and_drops_islands() -> None:
    obj = box_object(10, 50, 10, 50, iou=0.99)
    obj.logits[20:22, 20:22] = -8.0  # 4-pixel hole
    obj.logits[70:72, 100:102] = 8.0  # 4-pixel island
    records, _ = run([obj], min_mask_region_area=10)
    assert len(records) == 1
    mask = records[0]["segmentation"]
    expected = np.zeros((H, W), dtype=bool)
    expected[10:50, 10:50] = True
    np.testing.assert_array_equal(mask, expected)
    assert records[0]["area"] == 1600
    assert records[0]["bbox"] == [10, 10, 40, 40]
    records, _ = run([obj], min_mask_region_area=0)
    assert records[0]["area"] == 1600 - 4 + 4


def test_masks_encode_to_pycocotools_compatible_rle() -> None:
    records, _ = run([box_object(5, 30, 7, 40)])
    rle = encode_mask(records[0]["segmentation"])  # the caller encodes, with storage's codec
    assert isinstance(rle["counts"], str)
    assert rle["size"] == [H, W]
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[5:30, 7:40] = 1
    direct = coco_mask.encode(np.asfortranarray(expected))
    assert rle["counts"] == direct["counts"].decode()
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert coco_mask.area(as_bytes) == records[0]["area"] == 25 * 33
    assert coco_mask.toBbox(as_bytes).tolist() == records[0]["bbox"]


def test_crops_drop_masks_cut_by_inner_crop_edges() -> None:
    # The object straddles the centre, so each layer-1 crop sees it cut by an inner edge.
    straddling = box_object(30, 70, 40, 90, iou=0.95)
    records, _ = run([straddling], crop_n_layers=1, crop_overlap_ratio=0.1)
    assert len(records) == 1
    assert records[0]["crop_box"] == [0, 0, W, H]
    assert records[0]["area"] == 40 * 50


def test_crops_prefer_the_smallest_crop_that_sees_an_object() -> None:
    corner = box_object(2, 20, 2, 20, iou=0.95)  # inside the top-left crop only
    records, _ = run([corner], crop_n_layers=1, crop_overlap_ratio=0.1)
    assert len(records) == 1
    x, y, w, h = records[0]["crop_box"]
    assert (x, y) == (0, 0)
    assert w < W
    assert h < H
    assert records[0]["bbox"] == [2, 2, 18, 18]
    assert records[0]["area"] == 18 * 18


def test_rejects_bad_images_and_config() -> None:
    generator = AutomaticMaskGenerator(FakePredictor([]), MaskGeneratorConfig(points_per_side=2))
    with pytest.raises(InvalidInputError, match=r"\(H, W, 3\)"):
        generator.generate(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="uint8"):
        generator.generate(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="points_per_batch"):
        MaskGeneratorConfig(points_per_batch=0)
    with pytest.raises(InvalidInputError, match="box_nms_thresh"):
        MaskGeneratorConfig(box_nms_thresh=1.5)
