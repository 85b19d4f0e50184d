"""EfficientViT-SAM in ONNX Runtime and OpenVINO against torch float32: the parity gate, all
five variants.

Random weights (seeded): parity depends on the arithmetic, not on the values. Each variant's
encoder (dynamic batch) and box decoder (dynamic number of boxes) are exported once, checked by
the ONNX checker, and every runtime of them must reproduce torch's embeddings and masks: float32
runtimes at mean mask IoU >= 0.99, OpenVINO's bfloat16 encoder at >= 0.98.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.models.efficientvit_sam.inference import segment_boxes_batch
from autolabel.models.efficientvit_sam.optimize import optimize_for_inference
from autolabel.models.errors import InvalidInputError
from autolabel.models.registry import create_model
from autolabel.models.runtime.backends import TorchSegmenter
from autolabel.models.runtime.parity import ParityReport, sam_parity
from autolabel.models.runtime.sam_onnx import OnnxSam, export_box_decoder, export_encoder
from autolabel.models.runtime.sam_openvino import OpenVinoSam

pytest.importorskip("onnxruntime")
# One variant of each family in the default run; all five under `-m slow` (minutes each).
VARIANTS = [
    "l0",
    pytest.param("l1", marks=pytest.mark.slow),
    pytest.param("l2", marks=pytest.mark.slow),
    "xl0",
    pytest.param("xl1", marks=pytest.mark.slow),
]


def onnx_of(name: str, folder: Path) -> tuple[TorchSegmenter, OnnxSam]:
    torch.manual_seed(0)
    model = create_model(name, family="segmenter")
    export_encoder(optimize_for_inference(model), folder / "encoder.onnx")
    export_box_decoder(model, folder / "decoder.onnx")
    runtime = OnnxSam(
        folder / "encoder.onnx",
        folder / "decoder.onnx",
        input_size=model.encoder_input_size,
        threads=2,
    )
    return TorchSegmenter(model), runtime


@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_runtime_and_openvino_pass_the_parity_gate(variant: str, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    reference, runtime = onnx_of(f"efficientvit-sam-{variant}", tmp_path)
    report = sam_parity(reference, runtime)
    assert report.passed, report.describe()
    assert report.mean_mask_iou >= 0.99
    assert report.embedding_max_abs < 1e-4
    size = runtime.input_size
    for precision, min_iou in (("fp32", 0.99), ("bf16", 0.98)):
        openvino = OpenVinoSam(
            tmp_path / "encoder.onnx", tmp_path / "decoder.onnx", input_size=size,
            precision=precision,  # type: ignore[arg-type]
        )  # fmt: skip
        report = sam_parity(reference, openvino, precision=precision)
        assert report.passed, report.describe()
        assert report.mean_mask_iou >= min_iou
        assert report.candidate == f"openvino-{precision}"


def test_dynamic_batch_and_box_counts_match_torch(tmp_path: Path) -> None:
    reference, runtime = onnx_of("efficientvit-sam-l0", tmp_path)
    rng = np.random.default_rng(3)
    sizes = ((90, 160), (300, 200), (64, 64))
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    boxes = [np.array([[5.0, 5.0, 80.0, 60.0]] * k).reshape(-1, 4) for k in (1, 3, 0)]
    expected = segment_boxes_batch(reference.model, images, boxes, batch_size=3)
    got = segment_boxes_batch(runtime, images, boxes, batch_size=3)
    for e, g in zip(expected, got, strict=True):
        assert len(e) == len(g)
        np.testing.assert_array_equal(e.masks, g.masks)
        np.testing.assert_allclose(e.iou_predictions, g.iou_predictions, atol=1e-5)


def test_the_gate_fails_a_runtime_that_differs(tmp_path: Path) -> None:
    reference, runtime = onnx_of("efficientvit-sam-l0", tmp_path)

    class Shifted:
        name, input_size = "shifted", runtime.input_size

        def encode(self, images: torch.Tensor) -> torch.Tensor:
            return runtime.encode(images) + 0.5

        def decode_boxes(self, embedding: torch.Tensor, boxes: torch.Tensor):  # type: ignore[no-untyped-def]
            logits, iou = runtime.decode_boxes(embedding, boxes)
            return -logits, iou

    report = sam_parity(reference, Shifted())
    assert isinstance(report, ParityReport)
    assert not report.passed
    assert "shifted fails the parity gate" in report.describe()


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    _, runtime = onnx_of("efficientvit-sam-l0", tmp_path)
    with pytest.raises(InvalidInputError, match=r"expected \(B, 3, 512, 512\)"):
        runtime.encode(torch.zeros(1, 3, 256, 256))
    with pytest.raises(InvalidInputError, match=r"expected \(N >= 1, 4\) boxes"):
        runtime.decode_boxes(torch.zeros(1, 256, 64, 64), torch.zeros(0, 4))
