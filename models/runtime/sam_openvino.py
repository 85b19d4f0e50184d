"""EfficientViT-SAM's ONNX graphs (`autolabel.models.runtime.sam_onnx`) compiled by OpenVINO.

On CPUs with AVX-512 BF16 (or AMX), `precision="bf16"` runs the image encoder and the box
decoder in bfloat16 (OpenVINO keeps its own list of layers in float32); the parity gate judges
the pair. L0 with 100 boxes on a 2-core Intel Xeon: decoder 1.9-2.3 s in bf16 against 4.3-4.8 s
in f32 and 8.9 s in torch. On a 2-core AMD EPYC, batch 1: L0 encoder
0.18 s in f32 and 0.09 s in bf16 against 0.28 s for the prepared torch model; XL0 0.93 s and
0.46 s against 1.36 s.
"""

from pathlib import Path

from autolabel.models.runtime.sam_onnx import ExportedSam
from autolabel.models.runtime.sessions import OpenVinoPrecision, openvino_runner


class OpenVinoSam(ExportedSam):
    """The exported encoder and box decoder in OpenVINO on the CPU ("openvino-fp32"/"-bf16").

    Args:
        encoder: Path of the exported encoder (`sam_onnx.export_encoder`).
        decoder: Path of the exported box decoder (`sam_onnx.export_box_decoder`).
        input_size: S of the encoder input.
        precision: "fp32" or "bf16", for the encoder and the decoder.
        threads: CPU threads (None: OpenVINO's default).
    """

    def __init__(
        self,
        encoder: Path,
        decoder: Path,
        *,
        input_size: int,
        precision: OpenVinoPrecision = "fp32",
        threads: int | None = None,
    ) -> None:
        super().__init__(
            openvino_runner(encoder, precision=precision, threads=threads),
            openvino_runner(decoder, precision=precision, threads=threads),
            input_size=input_size,
            name=f"openvino-{precision}",
        )
