"""Parity with the official EfficientViT-SAM outputs for all five variants.

The references are tests/fixtures/parity/ref_<v>.npz, reduced by tests/fixtures/parity/reduce.py
from the official outputs in shared/parity (see that script for what is kept), so the check runs
on every clone. Each variant is built once per module, filled with the deterministic weights of
fill.py, loaded strictly, and run through `SamPredictor` exactly as the official outputs were made.
L0 and XL0 are also checked after `prepare_for_inference` (BN folding, channels_last), the fast
CPU path.

Tolerances are those for the full fixtures: atol ATOL (rtol 0) on the embedding, the low-res logits
and the IoU predictions; masks equal except where the official full-res logit is within UNSURE_LOGIT
of 0. The stored logits are within `logit_quantum` / 2 of the official ones, so the logit atol and
the unsure band are narrowed by that much: every bound the test proves about the distance to the
official numbers is still at least as strict as ATOL and UNSURE_LOGIT.
"""

import hashlib
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from autolabel.models.efficientvit_sam.optimize import prepare_for_inference
from autolabel.models.predictor import SamPredictor
from autolabel.models.registry import get_spec
from autolabel.models.transforms import postprocess_masks, preprocess_image
from tests.unit.models.helpers import FIXTURES_DIR, load_script, torch_threads

PARITY_DIR = FIXTURES_DIR / "parity"
VARIANTS = ["l0", "l1", "l2", "xl0", "xl1"]
ATOL = 1e-4
UNSURE_LOGIT = 1e-3

Reference = dict[str, Any]


@cache
def reduction() -> ModuleType:
    return load_script(PARITY_DIR / "reduce.py", "parity_reduce")


def filled_model(variant: str) -> Any:
    model = get_spec(f"efficientvit-sam-{variant}").build()
    fill = load_script(PARITY_DIR / "fill.py", "parity_fill")
    model.load_state_dict(fill.fill_state_dict(model.state_dict()), strict=True)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def two_threads() -> Iterator[None]:
    """The fixtures were made with two intra-op threads."""
    with torch_threads(2):
        yield


@pytest.fixture(scope="module", params=VARIANTS)
def case(request: pytest.FixtureRequest) -> tuple[Any, Reference]:
    variant = request.param
    ref = reduction().load_reference(PARITY_DIR / f"ref_{variant}.npz")
    return filled_model(variant), ref


def logit_atol(ref: Reference) -> float:
    return ATOL - float(ref["logit_quantum"]) / 2


def assert_embedding_matches(embedding: np.ndarray, ref: Reference) -> None:
    assert embedding.shape == (1, 256, 64, 64)
    red = reduction()
    for name, got in (
        ("image_embedding_grid", red.embedding_grid(embedding)),
        ("image_embedding_channels", red.embedding_channels(embedding)),
    ):
        np.testing.assert_allclose(got, ref[name], rtol=0, atol=ATOL, err_msg=name)
    # Implied by an elementwise bound of ATOL; a cheap look at the elements outside the slices.
    whole = embedding.astype(np.float64)
    assert abs(whole.mean() - float(ref["image_embedding_mean"])) <= ATOL
    assert abs(whole.std() - float(ref["image_embedding_std"])) <= ATOL


def assert_masks_match(masks: np.ndarray, ref: Reference, name: str) -> None:
    low_res = torch.from_numpy(ref[f"{name}_low_res_logits"])
    low_res = low_res if low_res.dim() == 4 else low_res[None]
    size = (int(ref["input_size"][0]), int(ref["input_size"][1]))
    original = (int(ref["original_size"][0]), int(ref["original_size"][1]))
    full = postprocess_masks(low_res, size, original).numpy().reshape(ref[f"{name}_masks"].shape)
    assert masks.shape == ref[f"{name}_masks"].shape
    differing = masks != ref[f"{name}_masks"]
    unsure = UNSURE_LOGIT - float(ref["logit_quantum"]) / 2
    assert not np.any(differing & (np.abs(full) >= unsure)), f"case {name}: masks differ"


def assert_case(ref: Reference, name: str, out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    masks, iou, low_res = out
    np.testing.assert_allclose(low_res, ref[f"{name}_low_res_logits"], rtol=0, atol=logit_atol(ref))
    np.testing.assert_allclose(iou, ref[f"{name}_iou_predictions"], rtol=0, atol=ATOL)
    assert_masks_match(masks, ref, name)


def run_cases(predictor: SamPredictor, ref: Reference) -> None:
    predictor.set_image(ref["image"])
    assert_embedding_matches(predictor.get_image_embedding().numpy(), ref)
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


def test_input_tensor_is_bit_exact(case: tuple[Any, Reference]) -> None:
    model, ref = case
    x = preprocess_image(ref["image"], model.encoder_input_size)[None].numpy()
    assert x.dtype == np.float32
    assert x.shape == tuple(ref["input_tensor_shape"])
    np.testing.assert_array_equal(reduction().input_grid(x), ref["input_tensor_grid"])
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    assert digest == str(ref["input_tensor_sha256"])


def test_prompt_transforms_match(case: tuple[Any, Reference]) -> None:
    model, ref = case
    predictor = SamPredictor(model)
    size = (int(ref["original_size"][0]), int(ref["original_size"][1]))
    for name in ("a_box", "c_box"):
        got = predictor.transform.apply_boxes(ref[name], size).astype(np.float32)
        np.testing.assert_array_equal(got, ref[f"{name}_transformed"])
    for name in ("b_point_coords", "c_point_coords"):
        got = predictor.transform.apply_coords(ref[name], size).astype(np.float32)
        np.testing.assert_array_equal(got, ref[f"{name}_transformed"])


def test_predictor_matches_official(case: tuple[Any, Reference]) -> None:
    model, ref = case
    run_cases(SamPredictor(model), ref)


def test_fast_cpu_path_stays_within_tolerance(case: tuple[Any, Reference]) -> None:
    model, ref = case
    if str(ref["variant"]) not in ("l0", "xl0"):
        pytest.skip("the fast path is checked on L0 and XL0 (the throughput targets)")
    fast = prepare_for_inference(model, fold_bn=True, channels_last=True)
    run_cases(SamPredictor(fast), ref)
