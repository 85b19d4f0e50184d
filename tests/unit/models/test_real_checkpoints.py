"""Released checkpoints (slow): strict load with checksum, then segment an obvious object.

Put the official files (e.g. efficientvit_sam_l0.pt) in $AUTOLABEL_MODELS__WEIGHTS_DIR; variants
whose file is absent are skipped. The weights cannot be downloaded in CI.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from autolabel.models.efficientvit_sam.inference import segment_boxes_batch
from autolabel.models.efficientvit_sam.optimize import prepare_for_inference
from autolabel.models.registry import MODEL_SPECS, create_model

pytestmark = pytest.mark.slow


def weights_path(name: str) -> Path:
    folder = os.environ.get("AUTOLABEL_MODELS__WEIGHTS_DIR")
    if not folder:
        pytest.skip("set AUTOLABEL_MODELS__WEIGHTS_DIR to a folder of the released checkpoints")
    path = Path(folder) / MODEL_SPECS[name].weights.filename
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_released_weights_segment_a_square(name: str) -> None:
    model = create_model(name, checkpoint_path=weights_path(name))
    image = np.full((300, 400, 3), 30, dtype=np.uint8)
    image[100:200, 150:270] = (230, 60, 40)
    square = np.zeros((300, 400), dtype=bool)
    square[100:200, 150:270] = True
    boxes = np.array([[145.0, 95.0, 275.0, 205.0]])
    for candidate in (model, prepare_for_inference(model)):
        (result,) = segment_boxes_batch(candidate, [image], [boxes])
        mask = result.masks[0]
        iou = (mask & square).sum() / (mask | square).sum()
        assert iou > 0.9, f"{name}: IoU {iou:.3f} with the square"
        assert result.iou_predictions[0] > 0.5
