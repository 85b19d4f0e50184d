"""ONNX export of the GroundingDINO image side, run in ONNX Runtime, against torch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino import build_model, load_tokenizer, tiny_test_config
from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.onnx_export import OnnxImageSide, export_onnx
from autolabel.models.grounding_dino.text import encode_text

VOCAB_DIR = Path(__file__).parents[2] / "fixtures" / "grounding_dino" / "bert-base-uncased"


def test_onnx_runtime_matches_torch_for_new_images_and_captions(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(tiny_test_config())
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
