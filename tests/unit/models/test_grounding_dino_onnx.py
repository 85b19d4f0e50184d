"""ONNX export of the GroundingDINO image side (one graph per image shape, any batch size and
caption length), run in ONNX Runtime and OpenVINO, against torch; and the detector parity gate."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.models.detection import DetectionConfig
from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino import (
    GroundingDinoDetector,
    InferenceOptions,
    build_detector,
    load_tokenizer,
    tiny_test_config,
)
from autolabel.models.grounding_dino.detector_gate import detector_parity
from autolabel.models.grounding_dino.onnx_export import export_onnx
from autolabel.models.grounding_dino.runtime import ExportedImageSide, TorchImageSide
from autolabel.models.grounding_dino.text import encode_text
from autolabel.models.prompts import PromptSet
from autolabel.models.runtime.sessions import openvino_runner, ort_runner
from tests.unit.models.helpers import VOCAB_DIR

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build_detector(tiny_test_config()).eval()


def text_of(model, caption: str):  # type: ignore[no-untyped-def]
    ids = load_tokenizer(VOCAB_DIR)(caption)["input_ids"]
    return encode_text(model, torch.tensor([ids]))


class Exporter:
    """Exports each bucket once into a folder, counting exports."""

    def __init__(self, model, folder: Path) -> None:  # type: ignore[no-untyped-def]
        self.model, self.folder, self.shapes = model, folder, []  # type: ignore[var-annotated]

    def __call__(self, image_hw: tuple[int, int]) -> Path:
        self.shapes.append(image_hw)
        path = self.folder / "gdino_{}x{}.onnx".format(*image_hw)
        export_onnx(self.model, path, text=text_of(self.model, "a cat ."), image_hw=image_hw)
        return path


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_one_graph_serves_any_batch_size_and_caption(model, runtime: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if runtime == "openvino":
        pytest.importorskip("openvino")
    compile_graph = ort_runner if runtime == "onnxruntime" else openvino_runner
    exporter = Exporter(model, tmp_path)
    side = ExportedImageSide(
        exporter, compile_graph, name=f"{runtime}-fp32", fallback=TorchImageSide(model)
    )
    generator = torch.Generator().manual_seed(1)
    for batch, caption in [(2, "a cat . dogs ."), (1, "forklift ."), (3, "a cat . dogs .")]:
        text = text_of(model, caption)
        pixels = torch.randn(batch, 3, 64, 96, generator=generator)
        with torch.inference_mode():
            expected = TorchImageSide(model)(pixels, text)
        logits, boxes = side(pixels, text)
        assert logits.shape == expected[0].shape == (batch, 30, text.input_ids.shape[1])
        np.testing.assert_allclose(boxes.numpy(), expected[1].numpy(), atol=1e-4)
        np.testing.assert_allclose(logits.numpy(), expected[0].numpy(), atol=1e-3)
    assert exporter.shapes == [(64, 96)]  # exported once for all batch sizes and captions


def test_shapes_beyond_max_buckets_run_in_the_fallback(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    exporter = Exporter(model, tmp_path)
    side = ExportedImageSide(
        exporter, ort_runner, name="onnxruntime-fp32", fallback=TorchImageSide(model), max_buckets=1
    )
    text = text_of(model, "a cat .")
    side(torch.randn(1, 3, 64, 96), text)
    logits, _ = side(torch.randn(1, 3, 96, 64), text)
    assert exporter.shapes == [(64, 96)]
    assert side.fallback_shapes == {(96, 64)}
    assert logits.shape == (1, 30, text.input_ids.shape[1])
    with pytest.raises(InvalidInputError, match="max_buckets"):
        ExportedImageSide(exporter, ort_runner, name="x", fallback=side, max_buckets=0)


def test_the_detector_in_onnxruntime_detects_like_torch(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tokenizer = load_tokenizer(VOCAB_DIR)
    config = DetectionConfig(box_threshold=0.0, text_threshold=0.0, max_detections=10)
    options = InferenceOptions(min_size=64, max_size=128, max_batch_size=2)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(64, 96)] * 3]
    images.append(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8))
    prompt = PromptSet.from_categories({"cat": ["kitten"], "dog": []})
    expected = GroundingDinoDetector(model, tokenizer, config, options).detect(images, prompt)
    exporter = Exporter(model, tmp_path)
    side = ExportedImageSide(
        exporter, ort_runner, name="onnxruntime-fp32", fallback=TorchImageSide(model)
    )
    got = GroundingDinoDetector(model, tokenizer, config, options, side).detect(images, prompt)
    assert sorted(exporter.shapes) == [(64, 96), (96, 64)]  # one export per image shape
    for a, b in zip(got, expected, strict=True):
        assert a.phrases == b.phrases
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes_xyxy_px, b.boxes_xyxy_px, atol=1e-2)


def test_the_detector_gate_passes_float32_runtimes_and_fails_a_different_one(
    model, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    text = text_of(model, "person . car . dog .")
    reference = TorchImageSide(model)
    side = ExportedImageSide(
        Exporter(model, tmp_path), partial(ort_runner, threads=1), name="onnxruntime-fp32",
        fallback=reference,
    )  # fmt: skip
    report = detector_parity(reference, side, text)
    assert report.passed, report.describe()
    assert report.agreement == 1.0
    assert report.mean_box_iou > 0.999

    class Shifted:
        name = "shifted"

        def __call__(self, pixels, text):  # type: ignore[no-untyped-def]
            logits, boxes = reference(pixels, text)
            return logits, (boxes + torch.tensor([0.05, 0.0, 0.0, 0.0])).clamp(0, 1)

    failed = detector_parity(reference, Shifted(), text)
    assert not failed.passed
    assert "shifted fails the detector parity gate" in failed.describe()


def test_openvino_compiles_per_input_shapes_up_to_a_bound(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("openvino")
    exporter = Exporter(model, tmp_path)
    runner = partial(openvino_runner, static_shapes=1)
    side = ExportedImageSide(exporter, runner, name="openvino-fp32", fallback=TorchImageSide(model))
    text = text_of(model, "a cat .")
    generator = torch.Generator().manual_seed(2)
    for batch in (2, 1, 2):  # the second shape set is past the bound: the dynamic graph runs it
        pixels = torch.randn(batch, 3, 64, 96, generator=generator)
        with torch.inference_mode():
            expected = TorchImageSide(model)(pixels, text)
        logits, boxes = side(pixels, text)
        np.testing.assert_allclose(boxes.numpy(), expected[1].numpy(), atol=1e-4)
        np.testing.assert_allclose(logits.numpy(), expected[0].numpy(), atol=1e-3)
    compiled = side.runners[(64, 96)]
    assert len(compiled.runners) == 1  # type: ignore[attr-defined]
    assert compiled.dynamic is not None  # type: ignore[attr-defined]
