"""prepare_for_inference: BN folding parity, precision options, no mutation of the input."""

import numpy as np
import pytest
import torch

from autolabel.models.efficientvit_sam.inference import encode_images
from autolabel.models.efficientvit_sam.optimize import prepare_for_inference, resolve_dtype
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError
from autolabel.models.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> EfficientViTSam:
    torch.manual_seed(0)
    model = create_model("efficientvit-sam-test")
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding has work to do
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None
                assert module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)


def embedding(model: EfficientViTSam, image: np.ndarray) -> torch.Tensor:
    return encode_images(model, [image])[0].embedding


@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_model_matches_within_tolerance(
    model: EfficientViTSam, image: np.ndarray, channels_last: bool
) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = prepare_for_inference(model, channels_last=channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.image_encoder.modules())
    torch.testing.assert_close(embedding(fast, image), embedding(model, image), rtol=0, atol=1e-4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_bf16_encoder_runs_and_returns_float32(model: EfficientViTSam, image: np.ndarray) -> None:
    fast = prepare_for_inference(model, dtype="bf16")
    assert next(fast.image_encoder.parameters()).dtype == torch.bfloat16
    got = embedding(fast, image)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, embedding(model, image), rtol=0, atol=0.25)


def test_fp16_needs_cuda_and_unknown_dtypes_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match="CUDA"):
        resolve_dtype("fp16", "cpu")
    with pytest.raises(InvalidInputError, match="expected dtype"):
        resolve_dtype("int8", "cpu")
    assert resolve_dtype(torch.bfloat16, "cpu") == torch.bfloat16


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_encoder_matches_within_tolerance(
    model: EfficientViTSam, image: np.ndarray
) -> None:
    compiled = prepare_for_inference(model, channels_last=True, compile_encoder=True)
    torch.testing.assert_close(
        embedding(compiled, image), embedding(model, image), rtol=0, atol=1e-4
    )


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_half_precision_masks_agree_with_cpu_fp32(
    model: EfficientViTSam, image: np.ndarray, dtype: str
) -> None:
    from autolabel.models.efficientvit_sam.inference import segment_boxes

    boxes = np.array([[5.0, 6.0, 60.0, 40.0], [0.0, 0.0, 69.0, 49.0]])
    reference = segment_boxes(model, encode_images(model, [image])[0], boxes)
    fast = prepare_for_inference(model, device="cuda", dtype=dtype)
    got = segment_boxes(fast, encode_images(fast, [image])[0], boxes)
    assert got.masks.shape == reference.masks.shape
    inter = (got.masks & reference.masks).sum(axis=(1, 2))
    union = (got.masks | reference.masks).sum(axis=(1, 2))
    assert np.all(inter >= 0.9 * np.maximum(union, 1))
