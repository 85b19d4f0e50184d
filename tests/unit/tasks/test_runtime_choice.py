"""Runtime selection for labeling: what `auto` and named runtimes resolve to on this CPU, the
parity gate deciding, the choice and the exported graphs cached on disk."""

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from autolabel.models.errors import InvalidInputError
from autolabel.models.runtime.choice import RuntimeRequest
from autolabel.storage.config import S3Config
from autolabel.tasks.resources import ResourceConfig, Resources
from autolabel.tasks.runtimes import device_traits

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
SEGMENTER, DETECTOR = "efficientvit-sam-test", "grounding-dino-test"


def resources(weights: Path) -> Resources:
    return Resources(
        ResourceConfig(
            database_url=make_url("sqlite://"),
            s3=S3Config(),
            weights_dir=weights,
            download_weights=False,
        )
    )


def choices(weights: Path) -> list[dict[str, object]]:
    return [
        json.loads(path.read_text())
        for path in sorted((weights / "runtime-cache").glob("choice-*/choice.json"))
    ]


def test_auto_measures_the_gated_cpu_runtimes_and_caches_the_choice(tmp_path: Path) -> None:
    auto = RuntimeRequest()
    segmenter, choice = resources(tmp_path).segmenter_runtime(
        SEGMENTER, random_weights=True, request=auto
    )
    assert choice.runtime == segmenter.name
    assert choice.runtime in {"openvino-bf16", "openvino-fp32", "onnxruntime-fp32", "torch-fp32"}
    assert "fastest passing" in choice.reason
    assert "torch-fp32" in choice.reason
    assert "onnxruntime-fp32 passes the parity gate" in choice.reason
    exported = sorted(p.name for p in (tmp_path / "runtime-cache").glob("sam-*"))
    assert [name.rsplit("-", 1)[0] for name in exported] == [
        f"sam-{SEGMENTER}-random-decoder",
        f"sam-{SEGMENTER}-random-encoder",
    ]
    # A second worker process on the same machine reads the choice: no new measurement.
    before = choices(tmp_path)
    again, second = resources(tmp_path).segmenter_runtime(
        SEGMENTER, random_weights=True, request=auto
    )
    assert second == choice
    assert again.name == segmenter.name
    assert choices(tmp_path) == before


def test_the_detector_uses_an_exported_runtime_only_when_it_passes_its_gate(
    tmp_path: Path,
) -> None:
    parts, choice = resources(tmp_path).detector_runtime(
        DETECTOR, random_weights=True, request=RuntimeRequest("openvino", "fp32")
    )
    assert choice.runtime == "openvino-fp32" == parts.image_side.name  # type: ignore[union-attr]
    assert "openvino-fp32 passes the detector parity gate" in choice.reason
    if device_traits("cpu").bf16:
        # bfloat16 moves the saturated scores of random weights: the gate refuses it by name...
        with pytest.raises(InvalidInputError, match="fails the detector parity gate"):
            resources(tmp_path).detector_runtime(
                DETECTOR, random_weights=True, request=RuntimeRequest("torch", "bf16")
            )


def test_named_runtimes_that_cannot_run_here_are_one_line_errors(tmp_path: Path) -> None:
    res = resources(tmp_path)
    with pytest.raises(
        InvalidInputError, match="expected a backend that runs on cpu, got tensorrt"
    ):
        res.segmenter_runtime(
            SEGMENTER, random_weights=True, request=RuntimeRequest("tensorrt", "fp16")
        )
    with pytest.raises(InvalidInputError, match="expected a precision onnxruntime runs"):
        res.segmenter_runtime(
            SEGMENTER, random_weights=True, request=RuntimeRequest("onnxruntime", "bf16")
        )
    with pytest.raises(InvalidInputError, match="expected a backend among"):
        RuntimeRequest("cuda-magic")


def test_torch_fp32_is_the_reference_and_is_never_gated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        segmenter, choice = resources(tmp_path).segmenter_runtime(
            SEGMENTER, random_weights=True, request=RuntimeRequest("torch", "fp32")
        )
    assert choice.runtime == "torch-fp32"
    assert segmenter.name == "torch-float32"
    assert choice.reason == "torch fp32 is the reference"
    assert "segmenter runs in torch-fp32" in caplog.text
    assert not list((tmp_path / "runtime-cache").glob("sam-*"))  # nothing exported
