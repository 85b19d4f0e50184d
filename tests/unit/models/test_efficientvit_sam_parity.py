"""Parity with the official EfficientViT-SAM outputs for all five variants (shared/parity).

Each variant is built once per module, filled with the deterministic weights of
shared/parity/fill.py, loaded strictly, and run through `SamPredictor` exactly as the official
fixtures were made. L0 and XL0 are also checked after `prepare_for_inference` (BN folding,
channels_last), the fast CPU path.
"""

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from autolabel.models.efficientvit_sam.optimize import prepare_for_inference
from autolabel.models.predictor import SamPredictor
from autolabel.models.registry import build_model
from autolabel.models.transforms import postprocess_masks, preprocess_image
from tests.unit.models.helpers import load_script, torch_threads

PARITY_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "parity"
VARIANTS = ["l0", "l1", "l2", "xl0", "xl1"]
ATOL = 1e-4
UNSURE_LOGIT = 1e-3

pytestmark = pytest.mark.skipif(
    not (PARITY_DIR / "fill.py").is_file(),
    reason=f"parity fixtures not found at {PARITY_DIR} (shared/ is not checked out)",
)


def load_fill() -> ModuleType:
    return load_script(PARITY_DIR / "fill.py", "parity_fill")


def filled_model(variant: str) -> Any:
    model = build_model(f"efficientvit-sam-{variant}")
    fill = load_fill()
    model.load_state_dict(fill.fill_state_dict(model.state_dict()), strict=True)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def two_threads() -> Iterator[None]:
    """The fixtures were made with two intra-op threads."""
    with torch_threads(2):
        yield


@pytest.fixture(scope="module", params=VARIANTS)
def case(request: pytest.FixtureRequest) -> tuple[Any, dict[str, np.ndarray]]:
    variant = request.param
    with np.load(PARITY_DIR / f"ref_{variant}.npz") as data:
        ref = {k: data[k] for k in data.files}
    return filled_model(variant), ref


def assert_masks_match(masks: np.ndarray, ref: dict[str, np.ndarray], name: str) -> None:
    low_res = torch.from_numpy(ref[f"{name}_low_res_logits"])
    low_res = low_res if low_res.dim() == 4 else low_res[None]
    size = (int(ref["input_size"][0]), int(ref["input_size"][1]))
    original = (int(ref["original_size"][0]), int(ref["original_size"][1]))
    full = postprocess_masks(low_res, size, original).numpy().reshape(ref[f"{name}_masks"].shape)
    assert masks.shape == ref[f"{name}_masks"].shape
    differing = masks != ref[f"{name}_masks"]
    assert not np.any(differing & (np.abs(full) >= UNSURE_LOGIT)), f"case {name}: masks differ"


def assert_case(
    ref: dict[str, np.ndarray], name: str, out: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    masks, iou, low_res = out
    np.testing.assert_allclose(low_res, ref[f"{name}_low_res_logits"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(iou, ref[f"{name}_iou_predictions"], rtol=0, atol=ATOL)
    assert_masks_match(masks, ref, name)


def run_cases(predictor: SamPredictor, ref: dict[str, np.ndarray]) -> None:
    predictor.set_image(ref["image"])
    np.testing.assert_allclose(
        predictor.get_image_embedding().numpy(), ref["image_embedding"], rtol=0, atol=ATOL
    )
    assert predictor.input_size == tuple(ref["input_size"])
    out = predictor.predict(box=ref["a_box"], multimask_output=bool(ref["a_multimask_output"]))
    assert_case(ref, "a", out)
    out = predictor.predict(
        point_coords=ref["b_point_coords"],
        point_labels=ref["b_point_labels"],
        multimask_output=bool(ref["b_multimask_output"]),
    )
    assert_case(ref, "b", out)
    out = predictor.predict(
        point_coords=ref["c_point_coords"],
        point_labels=ref["c_point_labels"],
        box=ref["c_box"],
        multimask_output=bool(ref["c_multimask_output"]),
    )
    assert_case(ref, "c", out)
    boxes = predictor.transform.apply_boxes_torch(
        torch.from_numpy(ref["d_boxes"]), predictor.original_size
    )
    np.testing.assert_array_equal(boxes.numpy(), ref["d_boxes_transformed"])
    masks, iou, low_res = predictor.predict_torch(
        None, None, boxes=boxes, multimask_output=bool(ref["d_multimask_output"])
    )
    assert_case(ref, "d", (masks.numpy(), iou.numpy(), low_res.numpy()))


def test_input_tensor_is_bit_exact(case: tuple[Any, dict[str, np.ndarray]]) -> None:
    model, ref = case
    x = preprocess_image(ref["image"], model.encoder_input_size)[None]
    np.testing.assert_array_equal(x.numpy(), ref["input_tensor"])


def test_prompt_transforms_match(case: tuple[Any, dict[str, np.ndarray]]) -> None:
    model, ref = case
    predictor = SamPredictor(model)
    size = (int(ref["original_size"][0]), int(ref["original_size"][1]))
    for name in ("a_box", "c_box"):
        got = predictor.transform.apply_boxes(ref[name], size).astype(np.float32)
        np.testing.assert_array_equal(got, ref[f"{name}_transformed"])
    for name in ("b_point_coords", "c_point_coords"):
        got = predictor.transform.apply_coords(ref[name], size).astype(np.float32)
        np.testing.assert_array_equal(got, ref[f"{name}_transformed"])


def test_predictor_matches_official(case: tuple[Any, dict[str, np.ndarray]]) -> None:
    model, ref = case
    run_cases(SamPredictor(model), ref)


def test_fast_cpu_path_stays_within_tolerance(case: tuple[Any, dict[str, np.ndarray]]) -> None:
    model, ref = case
    if str(ref["variant"]) not in ("l0", "xl0"):
        pytest.skip("the fast path is checked on L0 and XL0 (the throughput targets)")
    fast = prepare_for_inference(model, fold_bn=True, channels_last=True)
    run_cases(SamPredictor(fast), ref)
