"""AutomaticMaskGenerator end to end on a random-weight EfficientViT-SAM test model."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from autolabel.models import SamPredictor, create_model, mask_ops
from autolabel.models.mask_generator import AutomaticMaskGenerator, MaskGeneratorConfig


@pytest.fixture(scope="module")
def predictor() -> SamPredictor:
    torch.manual_seed(0)
    return SamPredictor(create_model("efficientvit-sam-test"))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


def test_records_are_the_predictor_masks_of_their_points(
    predictor: SamPredictor, image: np.ndarray
) -> None:
    # Filters off and NMS at IoU 1.0: every candidate of every grid point comes back.
    config = MaskGeneratorConfig(
        points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    records = AutomaticMaskGenerator(predictor, config).generate(image)
    assert 0 < len(records) <= 4 * 3
    assert [r["predicted_iou"] for r in records] == sorted(
        (r["predicted_iou"] for r in records), reverse=True
    )
    predictor.set_image(image)
    by_point: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = {}
    for record in records:
        mask = np.asarray(record["segmentation"])
        assert mask.shape == image.shape[:2]
        assert record["area"] == mask.sum()
        point = tuple(record["point_coords"][0])
        if point not in by_point:
            masks, ious, _ = predictor.predict(
                point_coords=np.array([point]), point_labels=np.array([1])
            )
            by_point[point] = (masks, ious)
        masks, ious = by_point[point]
        same = [i for i in range(3) if np.array_equal(masks[i], mask)]
        assert same, "record mask is none of the predictor's masks for its point"
        assert any(ious[i] == pytest.approx(record["predicted_iou"], abs=1e-5) for i in same)
    assert len(by_point) == 4
    predictor.reset_image()


def test_crop_layers_run_and_report_their_crops(predictor: SamPredictor, image: np.ndarray) -> None:
    config = MaskGeneratorConfig(
        points_per_side=2,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=4,
    )
    records = AutomaticMaskGenerator(predictor, config).generate(image)
    assert records
    crops, _ = mask_ops.generate_crop_boxes((48, 64), 1, config.crop_overlap_ratio)
    crops_xywh = [
        [float(x0), float(y0), float(x1 - x0), float(y1 - y0)] for x0, y0, x1, y1 in crops
    ]
    for record in records:
        assert record["crop_box"] in crops_xywh
        x, y, w, h = record["crop_box"]
        ((px, py),) = record["point_coords"]
        assert x <= px <= x + w
        assert y <= py <= y + h


def test_one_generator_serves_two_threads(predictor: SamPredictor, image: np.ndarray) -> None:
    config = MaskGeneratorConfig(
        points_per_side=1, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    generator = AutomaticMaskGenerator(predictor, config)
    images = [image, np.ascontiguousarray(image[::-1, ::-1])]
    sequential = [generator.generate(im) for im in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = list(pool.map(generator.generate, images))
    for alone, together in zip(sequential, concurrent, strict=True):
        assert [r["bbox"] for r in alone] == [r["bbox"] for r in together]
        assert [r["predicted_iou"] for r in alone] == [r["predicted_iou"] for r in together]
