"""The model-specific half of runtime selection (`autolabel.tasks.runtimes`): how each model's
candidate runtimes are built, gated against torch float32 and timed.

Segmenter: torch (`prepare_for_inference` at the candidate's precision), or the exported encoder
and box decoder (`autolabel.models.runtime.sam_onnx`) in ONNX Runtime, OpenVINO or TensorRT.
Detector: torch (float32, or bf16/fp16 autocast), or the exported image side, one graph per
resized image shape (`autolabel.models.grounding_dino.runtime.ExportedImageSide`), in ONNX
Runtime or OpenVINO on the CPU. Exported graphs live in the `ArtifactCache`.
"""

import copy
from dataclasses import asdict
from functools import cache as cache_result
from functools import partial
from pathlib import Path
from typing import cast

import torch
from transformers import GroundingDinoForObjectDetection

from autolabel.models.efficientvit_sam.optimize import optimize_for_inference, prepare_for_inference
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError
from autolabel.models.grounding_dino.detector_gate import detector_parity, parity_pixels
from autolabel.models.grounding_dino.onnx_export import export_onnx
from autolabel.models.grounding_dino.runtime import (
    ExportedImageSide,
    ImageSideRunner,
    TorchImageSide,
    TorchPrecision,
)
from autolabel.models.grounding_dino.text import TextFeatures, encode_text
from autolabel.models.runtime.backends import SegmenterBackend, TorchSegmenter
from autolabel.models.runtime.choice import Candidate, Precision
from autolabel.models.runtime.parity import parity_inputs, sam_parity
from autolabel.models.runtime.sam_onnx import OPSET, OnnxSam, export_box_decoder, export_encoder
from autolabel.models.runtime.sessions import OpenVinoPrecision, openvino_runner, ort_runner
from autolabel.storage.artifact_cache import ArtifactCache
from autolabel.tasks.runtimes import Trial, device_model, installed_versions

#: Caption of the detector's parity and timing inputs.
PARITY_CAPTION = "person . car . dog . chair ."


def _export_versions() -> dict[str, str]:
    versions = installed_versions()
    return {name: versions.get(name, "") for name in ("torch", "transformers", "onnx")}


def segmenter_trial(
    base: EfficientViTSam,
    identity: str,
    *,
    device: str,
    cache: ArtifactCache,
    threads: int | None = None,
) -> Trial:
    """How to try the segmenter's runtimes.

    Args:
        base: The float32 CPU model with its weights (not prepared; it is not modified).
        identity: The weights' identity, `<name>@<sha256 prefix>` or `<name>@random`.
    """

    @cache_result  # each candidate runs the same files: verify each once per trial
    def exported(part: str) -> Path:
        key = {"weights": identity, "part": part, "opset": OPSET, **_export_versions()}
        export = export_encoder if part == "encoder" else export_box_decoder

        def build(path: Path) -> None:
            source = optimize_for_inference(base) if part == "encoder" else copy.deepcopy(base)
            export(source.eval(), path)

        return cache.get(f"sam-{identity.replace('@', '-')}-{part}", key, f"{part}.onnx", build)

    def build(candidate: Candidate) -> SegmenterBackend:
        size = base.encoder_input_size
        if candidate.backend == "torch":
            dtype = cast(Precision, candidate.precision)
            compiled = device.startswith("cuda")  # CUDA graphs for the fixed-shape encoder
            model = prepare_for_inference(
                base, device=device, dtype=dtype, compile_encoder=compiled
            )
            return TorchSegmenter(model)
        encoder, decoder = exported("encoder"), exported("decoder")
        if candidate.backend == "onnxruntime":
            providers = ["CPUExecutionProvider"]
            if device.startswith("cuda"):
                providers.insert(0, "CUDAExecutionProvider")
            return OnnxSam(encoder, decoder, input_size=size, providers=providers, threads=threads)
        if candidate.backend == "openvino":
            from autolabel.models.runtime.sam_openvino import OpenVinoSam

            precision: OpenVinoPrecision = "bf16" if candidate.precision == "bf16" else "fp32"
            return OpenVinoSam(
                encoder, decoder, input_size=size, precision=precision, threads=threads
            )
        if candidate.backend == "tensorrt":
            return _tensorrt_sam(encoder, decoder, candidate, identity, size, device, cache)
        raise InvalidInputError(f"expected a segmenter backend, got {candidate.backend!r}")

    images, _ = parity_inputs(base.encoder_input_size)

    def gate(
        reference: SegmenterBackend, runtime: SegmenterBackend, candidate: Candidate
    ) -> tuple[bool, str]:
        report = sam_parity(reference, runtime, precision=candidate.precision)
        return report.passed, report.describe()

    return Trial(
        model="segmenter",
        identity=identity,
        build=build,
        gate=gate,
        timed=lambda runtime: partial(runtime.encode, images[:1]),
    )


def _tensorrt_sam(
    encoder: Path,
    decoder: Path,
    candidate: Candidate,
    identity: str,
    input_size: int,
    device: str,
    cache: ArtifactCache,
) -> SegmenterBackend:
    """TensorRT engines of the exported graphs, built once per key: the encoder at the
    candidate's precision (LayerNorm and attention kept in float32), the decoder in float32."""
    from autolabel.models.runtime import sam_tensorrt

    def engine(onnx: Path, part: str, precision: str) -> Path:
        profile = (
            sam_tensorrt.encoder_profile(input_size)
            if part == "encoder"
            else sam_tensorrt.decoder_profile()
        )
        key = {
            "weights": identity,
            "part": part,
            "precision": precision,
            "profile": [asdict(shape) for shape in profile],
            "device": device_model(device),
            **installed_versions(),
        }

        def build(path: Path) -> None:
            sam_tensorrt.build_engine(onnx, path, precision=precision, profile=profile)  # type: ignore[arg-type]

        label = f"trt-{identity.replace('@', '-')}-{part}-{precision}"
        return cache.get(label, key, f"{part}.engine", build)

    return sam_tensorrt.load_tensorrt_sam(
        (engine(encoder, "encoder", candidate.precision), engine(decoder, "decoder", "fp32")),
        input_size=input_size,
        precision=candidate.precision,  # type: ignore[arg-type]
        device=torch.device(device),
    )


class _Remembered:
    """The reference image side, answering repeated calls on the same inputs from memory (each
    candidate's gate compares with the same reference outputs)."""

    def __init__(self, runner: ImageSideRunner) -> None:
        self.runner = runner
        self.name = runner.name
        self.last: tuple[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] | None = None

    def __call__(
        self, pixel_values: torch.Tensor, text: TextFeatures
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (id(pixel_values), id(text))
        if self.last is None or self.last[0] != key:
            self.last = (key, self.runner(pixel_values, text))
        return self.last[1]


def detector_trial(
    model: GroundingDinoForObjectDetection,
    caption_ids: list[int],
    identity: str,
    *,
    device: str,
    cache: ArtifactCache,
    threads: int | None = None,
    max_buckets: int = 8,
) -> Trial:
    """How to try the detector's runtimes (the image side; text features stay in torch).

    Args:
        model: The detector network with its weights, float32, in eval mode.
        caption_ids: Token ids of `PARITY_CAPTION` (the job's tokenizer).
        identity: The weights' identity.
        max_buckets: Image shapes each exported runtime keeps compiled.
    """
    with torch.inference_mode():
        text: TextFeatures = encode_text(model, torch.tensor([caption_ids]))
    reference = TorchImageSide(model, device=device)

    @cache_result  # each candidate exports the same shapes: verify each once per trial
    def exporter(image_hw: tuple[int, int]) -> Path:
        height, width = image_hw
        key = {"weights": identity, "image_hw": [height, width], **_export_versions()}
        label = f"gdino-{identity.replace('@', '-')}-{height}x{width}"
        return cache.get(
            label,
            key,
            "image_side.onnx",
            lambda path: export_onnx(model, path, text=text, image_hw=image_hw),
        )

    def build(candidate: Candidate) -> ImageSideRunner:
        if candidate.backend == "torch":
            if candidate.precision == "fp32":
                return reference
            autocast: TorchPrecision = "bf16" if candidate.precision == "bf16" else "fp16"
            return TorchImageSide(model, device=device, precision=autocast)
        if candidate.backend == "onnxruntime":
            compile_graph = partial(ort_runner, threads=threads)
        elif candidate.backend == "openvino":
            hint: OpenVinoPrecision = "bf16" if candidate.precision == "bf16" else "fp32"
            compile_graph = partial(
                openvino_runner, precision=hint, threads=threads, static_shapes=8
            )
        else:
            raise InvalidInputError(f"expected a detector backend, got {candidate.backend!r}")
        return ExportedImageSide(
            exporter,
            compile_graph,
            name=candidate.name,
            fallback=reference,
            max_buckets=max_buckets,
        )

    pixels = parity_pixels()

    remembered = _Remembered(reference)

    def gate(
        reference_side: ImageSideRunner, runtime: ImageSideRunner, candidate: Candidate
    ) -> tuple[bool, str]:
        base = remembered if reference_side is reference else reference_side
        report = detector_parity(
            base, runtime, text, precision=candidate.precision, pixel_values=pixels
        )
        return report.passed, report.describe()

    return Trial(
        model="detector",
        identity=identity,
        build=build,
        gate=gate,
        timed=lambda runtime: partial(runtime, pixels, text),
    )
