"""What a runtime request resolves to on a device: `auto` lists, named runtimes, refusals."""

import pytest

from autolabel.models.errors import InvalidInputError
from autolabel.models.runtime.choice import Candidate, DeviceTraits, RuntimeRequest, candidates

ALL = frozenset({"onnxruntime", "openvino", "tensorrt"})


def names(request: RuntimeRequest, traits: DeviceTraits) -> list[str]:
    return [c.name for c in candidates(request, traits)]


def test_auto_on_a_cpu_tries_openvino_onnxruntime_and_the_torch_reference() -> None:
    bf16_cpu = DeviceTraits("cpu", bf16=True, installed=ALL - {"tensorrt"})
    assert names(RuntimeRequest(), bf16_cpu) == [
        "openvino-bf16", "openvino-fp32", "onnxruntime-fp32", "torch-fp32",
    ]  # fmt: skip
    plain_cpu = DeviceTraits("cpu", bf16=False, installed=frozenset({"onnxruntime"}))
    assert names(RuntimeRequest(), plain_cpu) == ["onnxruntime-fp32", "torch-fp32"]
    bare = DeviceTraits("cpu", bf16=False, installed=frozenset())
    assert names(RuntimeRequest(), bare) == ["torch-fp32"]
    assert names(RuntimeRequest("auto", "fp32"), bf16_cpu) == [
        "openvino-fp32", "onnxruntime-fp32", "torch-fp32",
    ]  # fmt: skip


def test_auto_on_cuda_prefers_tensorrt_then_reduced_precision_torch() -> None:
    h100 = DeviceTraits("cuda", bf16=True, installed=ALL)
    assert names(RuntimeRequest(), h100) == [
        "tensorrt-fp16",
        "torch-bf16",
        "torch-fp16",
        "torch-fp32",
    ]
    no_trt_t4 = DeviceTraits("cuda", bf16=False, installed=frozenset({"onnxruntime"}))
    assert names(RuntimeRequest(), no_trt_t4) == ["torch-fp16", "torch-fp32"]


def test_named_backends_take_their_usual_precision_on_the_device() -> None:
    cpu = DeviceTraits("cpu", bf16=True, installed=ALL - {"tensorrt"})
    cuda = DeviceTraits("cuda", bf16=True, installed=ALL)
    assert candidates(RuntimeRequest("openvino"), cpu) == [Candidate("openvino", "bf16")]
    assert candidates(RuntimeRequest("torch"), cpu) == [Candidate("torch", "fp32")]
    assert candidates(RuntimeRequest("torch"), cuda) == [Candidate("torch", "bf16")]
    assert candidates(RuntimeRequest("tensorrt"), cuda) == [Candidate("tensorrt", "fp16")]
    assert candidates(RuntimeRequest("torch", "bf16"), cpu) == [Candidate("torch", "bf16")]


@pytest.mark.parametrize(
    ("request_", "traits", "message"),
    [
        (RuntimeRequest("tensorrt"), DeviceTraits("cpu", True, ALL), "runs on cpu, got tensorrt"),
        (RuntimeRequest("openvino"), DeviceTraits("cuda", True, ALL), "runs on cuda, got openvino"),
        (
            RuntimeRequest("onnxruntime"),
            DeviceTraits("cpu", True, frozenset()),
            "expected onnxruntime to be installed",
        ),
        (
            RuntimeRequest("onnxruntime", "fp16"),
            DeviceTraits("cpu", True, ALL),
            "onnxruntime runs on this cpu \\(fp32\\), got fp16",
        ),
        (
            RuntimeRequest("openvino", "bf16"),
            DeviceTraits("cpu", False, ALL),
            "openvino runs on this cpu \\(fp32\\), got bf16",
        ),
        (RuntimeRequest("auto", "fp16"), DeviceTraits("cpu", True, ALL), "precision fp16 on cpu"),
    ],
)
def test_runtimes_that_cannot_run_are_refused_in_one_line(
    request_: RuntimeRequest, traits: DeviceTraits, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        candidates(request_, traits)
    assert "\n" not in str(info.value)


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(InvalidInputError, match="backend among auto, torch, onnxruntime"):
        RuntimeRequest("tflite")
    with pytest.raises(InvalidInputError, match="precision among auto, fp32, bf16, fp16"):
        RuntimeRequest("torch", "int8")
