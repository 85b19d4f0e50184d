"""prepare_for_inference on CUDA: precision and compile-mode defaults, compile fallback, parity.

The option resolution and the compile fallback run on the CPU (the fallback with a torch.compile
backend that fails, so no inductor compile is needed); the `gpu` tests check the prepared L0 model
(parity-fixture weights) against float32 with the parity gate, eager and compiled.
"""

import logging
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from autolabel.models.efficientvit_sam import optimize
from autolabel.models.efficientvit_sam.encoder import LayerNorm2d
from autolabel.models.efficientvit_sam.inference import encode_images
from autolabel.models.efficientvit_sam.optimize import (
    CompiledForward,
    prepare_for_inference,
    resolve_compile_mode,
    resolve_dtype,
)
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError
from autolabel.models.registry import create_model, get_spec
from autolabel.models.runtime.backends import TorchSegmenter
from autolabel.models.runtime.parity import sam_parity
from tests.unit.models.helpers import FIXTURES_DIR, load_script

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("native_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)]
)
def test_auto_precision_on_cuda_is_bf16_where_native_else_fp16(
    monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: torch.dtype
) -> None:
    calls: list[bool] = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return native_bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_dtype("auto", "cuda:0") == expected
    assert calls == [False]  # emulated bf16 (pre-Ampere) does not count


def test_auto_precision_on_cpu_is_fp32() -> None:
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_compile_mode_auto_uses_cuda_graphs_on_cuda_and_freezing_on_cpu() -> None:
    assert resolve_compile_mode("auto", "cuda") == "reduce-overhead"
    assert resolve_compile_mode("auto", "cpu") == "default"
    assert resolve_compile_mode("max-autotune-no-cudagraphs", "cuda") == (
        "max-autotune-no-cudagraphs"
    )
    with pytest.raises(InvalidInputError, match="compile_mode"):
        resolve_compile_mode("fastest", "cpu")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_model() -> EfficientViTSam:
    torch.manual_seed(0)
    return create_model("efficientvit-sam-test", family="segmenter")


def test_layernorm_stays_fp32_in_a_bf16_encoder(tiny_model: EfficientViTSam) -> None:
    prepared = prepare_for_inference(tiny_model, dtype="bf16")
    norms = [m for m in prepared.image_encoder.modules() if isinstance(m, LayerNorm2d)]
    assert norms
    assert all(p.dtype == torch.float32 for m in norms for p in m.parameters())
    assert TorchSegmenter(prepared).dtype == torch.bfloat16
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    embedding = encode_images(prepared, [image])[0].embedding
    assert embedding.dtype == torch.float32
    assert torch.isfinite(embedding).all()


@pytest.fixture(autouse=True)
def fresh_dynamo() -> None:
    """Each test compiles afresh (dynamo caches per code object)."""
    torch._dynamo.reset()


def our_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == optimize.__name__]


def failing_backend(
    graph: torch.fx.GraphModule, example_inputs: list[Tensor], **options: Any
) -> Any:
    raise RuntimeError("no compiler here")


def double(x: Tensor) -> Tensor:
    if x.dim() != 2:
        raise ValueError(f"expected a 2-D tensor, got {x.dim()} dims")
    return x * 2


def test_compile_failure_falls_back_to_eager_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forward = CompiledForward(double, mode="default", backend=failing_backend)
    x = torch.ones(2, 3)
    with caplog.at_level(logging.WARNING, logger=optimize.__name__):
        assert torch.equal(forward(x), x * 2)
        assert forward.compiled is None
        assert torch.equal(forward(x + 1), (x + 1) * 2)  # eager from now on, no second warning
    [record] = our_records(caplog)
    assert record.levelno == logging.WARNING
    assert "running it eagerly" in record.getMessage()
    assert "RuntimeError: no compiler here" in record.getMessage()


def test_an_input_the_eager_forward_rejects_keeps_the_compiled_forward() -> None:
    forward = CompiledForward(double, mode="default", backend=failing_backend)
    with pytest.raises(ValueError, match="2-D"):
        forward(torch.ones(3))
    assert forward.compiled is not None


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_forward_runs_the_compiled_function() -> None:
    traced: list[int] = []

    def counting_backend(
        graph: torch.fx.GraphModule, example_inputs: list[Tensor], **options: Any
    ) -> Any:
        assert options == {"options": {"freezing": True}}
        traced.append(len(example_inputs))
        return graph.forward

    forward = CompiledForward(double, mode="default", backend=counting_backend)
    x = torch.arange(6.0).view(2, 3)
    assert torch.equal(forward(x), x * 2)
    assert traced
    assert forward.compiled is not None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_inductor_compiles_the_encoder_on_cpu_without_falling_back(
    tiny_model: EfficientViTSam, caplog: pytest.LogCaptureFixture
) -> None:
    prepared = prepare_for_inference(tiny_model, compile_encoder=True)
    forward = prepared.image_encoder.forward
    assert isinstance(forward, CompiledForward)
    assert forward.mode == "default"
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger=optimize.__name__):
        got = encode_images(prepared, [image, image[::-1]], batch_size=2)
    assert not our_records(caplog), "torch.compile fell back to eager"
    assert forward.compiled is not None
    want = encode_images(tiny_model, [image, image[::-1]], batch_size=2)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.embedding, b.embedding, rtol=0, atol=1e-4)


def filled_l0() -> EfficientViTSam:
    """L0 with the parity fixtures' deterministic weights (see tests/fixtures/parity)."""
    model = get_spec("efficientvit-sam-l0").build()
    fill = load_script(FIXTURES_DIR / "parity" / "fill.py", "parity_fill")
    model.load_state_dict(fill.fill_state_dict(model.state_dict()), strict=True)
    assert isinstance(model, EfficientViTSam)
    return model.eval()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16", "auto"])
def test_prepared_half_precision_l0_passes_the_parity_gate(dtype: str) -> None:
    model = filled_l0()
    prepared = prepare_for_inference(model, device="cuda", dtype=dtype)  # type: ignore[arg-type]
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}[TorchSegmenter(prepared).dtype]
    report = sam_parity(TorchSegmenter(model), TorchSegmenter(prepared), precision=precision)
    assert report.passed, report.describe()


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_compiled_cuda_graph_l0_passes_the_parity_gate(caplog: pytest.LogCaptureFixture) -> None:
    model = filled_l0()
    prepared = prepare_for_inference(model, device="cuda", compile_encoder=True)
    segmenter = TorchSegmenter(prepared)
    with caplog.at_level(logging.WARNING, logger=optimize.__name__):
        report = sam_parity(TorchSegmenter(model), segmenter, precision="bf16")
        again = sam_parity(TorchSegmenter(model), segmenter, precision="bf16")  # graph replay
    assert not our_records(caplog), "torch.compile fell back to eager"
    assert report.passed, report.describe()
    assert again.mean_mask_iou == report.mean_mask_iou
