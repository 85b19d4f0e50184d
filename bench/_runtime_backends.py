"""CPU runtime backends of EfficientViT-SAM for `bench/model_throughput.py`'s worker.

The prepared float32 model (BatchNorm folded) is exported once per variant to ONNX in a
folder the parent gives (`export_encoder`, `export_box_decoder`), then built as:

    onnxruntime-fp32   autolabel.models.runtime.sam_onnx.OnnxSam
    openvino-fp32      autolabel.models.runtime.sam_openvino.OpenVinoSam(precision="fp32")
    openvino-bf16      autolabel.models.runtime.sam_openvino.OpenVinoSam(precision="bf16")

A backend is timed only when it passes the parity gate against the plain float32 torch model
(`autolabel.models.runtime.parity.sam_parity`, thresholds in parity.MIN_MASK_IOU).
"""

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from _official_reference import measure

RUNTIMES = ("onnxruntime-fp32", "openvino-fp32", "openvino-bf16")
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "box_decoder.onnx"


def export_prepared(base: Any, folder: Path) -> tuple[Path, Path]:
    """Export the BatchNorm-folded float32 CPU copy of `base` (once: kept files are reused)."""
    from autolabel.models import prepare_for_inference
    from autolabel.models.runtime.sam_onnx import export_box_decoder, export_encoder

    encoder, decoder = folder / ENCODER_FILE, folder / DECODER_FILE
    if not (encoder.is_file() and decoder.is_file()):
        prepared = prepare_for_inference(base, device="cpu", dtype="fp32", channels_last=False)
        export_encoder(prepared, encoder)
        export_box_decoder(prepared, decoder)
    return encoder, decoder


def _build(name: str, encoder: Path, decoder: Path, size: int, threads: int | None) -> Any:
    if name == "onnxruntime-fp32":
        from autolabel.models.runtime.sam_onnx import OnnxSam

        return OnnxSam(encoder, decoder, input_size=size, threads=threads)
    from autolabel.models.runtime.sam_openvino import OpenVinoSam

    precision: Literal["fp32", "bf16"] = "bf16" if name.endswith("bf16") else "fp32"
    return OpenVinoSam(encoder, decoder, input_size=size, precision=precision, threads=threads)


def gated_runtimes(
    base: Any, names: list[str], folder: Path, threads: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The runtimes among `names` that pass the parity gate, and one parity record per name.

    Args:
        base: The plain float32 CPU model (the parity reference).
        names: Runtime names from RUNTIMES.
        folder: Where the ONNX graphs are (or are exported to).
        threads: CPU threads per runtime (None: the runtime's default).

    Returns:
        {name: backend} of the passing ones, and [{"backend", "passed", "line", ...}].
    """
    from autolabel.models.runtime.backends import TorchSegmenter
    from autolabel.models.runtime.parity import sam_parity

    if not names:
        return {}, []
    encoder, decoder = export_prepared(base, folder)
    reference = TorchSegmenter(base)
    size = int(base.encoder_input_size)
    passing: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    for name in names:
        try:
            backend = _build(name, encoder, decoder, size, threads)
        except ImportError as exc:
            records.append({"backend": name, "passed": False, "line": f"{name}: not run: {exc}"})
            continue
        report = sam_parity(reference, backend, precision=name.rsplit("-", 1)[1])
        print(report.describe(), file=sys.stderr)
        records.append(
            {
                "backend": name,
                "passed": report.passed,
                "line": report.describe(),
                "mean_mask_iou": report.mean_mask_iou,
                "worst_mask_iou": report.worst_mask_iou,
                "embedding_max_abs": report.embedding_max_abs,
                "threshold": report.threshold,
            }
        )
        if report.passed:
            passing[name] = backend
    return passing, records


def time_backend(
    backend: Any,
    images: torch.Tensor,
    embedding: torch.Tensor,
    boxes: torch.Tensor,
    sizes: tuple[list[int], list[int]],
    counts: tuple[int, int],
) -> dict[str, dict[str, dict[str, float]]]:
    """Encoder timings per batch size and decoder timings per box count of one backend.

    Args:
        backend: A `SegmenterBackend` on the CPU.
        images: (B, 3, S, S) float32 normalized images, B >= every batch size.
        embedding: (1, 256, 64, 64) float32 embedding.
        boxes: (N, 4) float32 xyxy boxes in the 1024 prompt frame, N >= every box count.
        sizes: (batch sizes, box counts).
        counts: (warm-up calls, timed calls).
    """
    device = torch.device("cpu")
    timed: Callable[[Callable[[], object]], dict[str, float]] = partial(
        measure, device=device, warmup=counts[0], repeats=counts[1]
    )
    batch_sizes, box_counts = sizes
    return {
        "encoder": {str(b): timed(partial(backend.encode, images[:b])) for b in batch_sizes},
        "decoder": {
            str(n): timed(partial(backend.decode_boxes, embedding, boxes[:n])) for n in box_counts
        },
    }
