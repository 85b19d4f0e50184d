"""ONNX export of the GroundingDINO image side, run in ONNX Runtime, against torch."""

import dataclasses
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
from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.onnx_export import OnnxImageSide, export_onnx
from autolabel.models.grounding_dino.text import encode_text
from autolabel.models.prompts import PromptSet
from tests.unit.models.helpers import VOCAB_DIR


def test_onnx_runtime_matches_torch_for_new_images_and_captions(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_detector(tiny_test_config())
    tokenizer = load_tokenizer(VOCAB_DIR)

    def text_of(caption: str):  # type: ignore[no-untyped-def]
        return encode_text(model, torch.tensor([tokenizer(caption)["input_ids"]]))

    path = tmp_path / "gdino.onnx"
    export_onnx(model, path, text=text_of("a cat . dogs ."), batch_size=2, image_hw=(64, 96))
    runner = OnnxImageSide(path)
    other = text_of("forklift . person .")  # same token count (7), different caption
    assert other.input_ids.shape == (1, 7)
    pixels = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        logits, boxes = image_forward(model, pixels, other)
    onnx_logits, onnx_boxes = runner(pixels.numpy(), other)
    assert onnx_logits.shape == (2, 30, 7)
    np.testing.assert_allclose(onnx_boxes, boxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-3)
    with pytest.raises(InvalidInputError, match="7-token caption"):
        runner(pixels.numpy(), text_of("a cat ."))


def test_onnxruntime_backend_detects_like_the_torch_backend(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_detector(tiny_test_config())
    tokenizer = load_tokenizer(VOCAB_DIR)
    config = DetectionConfig(box_threshold=0.0, text_threshold=0.0, max_detections=10)
    options = InferenceOptions(min_size=64, max_size=128, max_batch_size=2)
    rng = np.random.default_rng(0)
    # three images of one bucket (a full batch and a padded one) and one of another bucket
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(64, 96)] * 3]
    images.append(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8))
    prompt = PromptSet.from_categories({"cat": ["kitten"], "dog": []})
    expected = GroundingDinoDetector(model, tokenizer, config, options).detect(images, prompt)
    onnx_options = dataclasses.replace(options, backend="onnxruntime", onnx_dir=tmp_path)
    onnx_detector = GroundingDinoDetector(model, tokenizer, config, onnx_options)
    got = onnx_detector.detect(images, prompt)
    assert len(list(tmp_path.glob("*.onnx"))) == 2  # one export per bucket
    for a, b in zip(got, expected, strict=True):
        assert a.phrases == b.phrases
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes_xyxy_px, b.boxes_xyxy_px, atol=1e-2)


def test_onnxruntime_backend_needs_a_directory_and_float32_on_cpu(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="onnx_dir"):
        InferenceOptions(backend="onnxruntime")
    with pytest.raises(InvalidInputError, match="bfloat16"):
        InferenceOptions(backend="onnxruntime", onnx_dir=tmp_path, precision="bfloat16")
