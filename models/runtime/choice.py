"""Which runtime a model runs in: what a job asks for, what may be tried, and what was chosen.

A job asks, per model, for a backend (`auto | torch | onnxruntime | openvino | tensorrt`) and a
precision (`auto | fp32 | bf16 | fp16`). `candidates` turns the request into the runtimes to try
on a device, most preferred first:

- CPU, `auto`: OpenVINO bf16 (on CPUs with AVX-512 BF16 or AMX) and fp32, ONNX Runtime fp32 and
  torch fp32; the caller measures those that pass their parity gate and takes the fastest.
- CUDA, `auto`: TensorRT fp16 where importable, then torch bf16 (where the GPU supports it) and
  fp16; the caller takes the first that passes its gate.
- A named backend with `auto` precision: that backend's usual precision on the device.

torch fp32 is the reference every gate compares against, so it is always a candidate of `auto`.
"""

from dataclasses import dataclass
from typing import Literal, get_args

from autolabel.models.errors import InvalidInputError

Backend = Literal["auto", "torch", "onnxruntime", "openvino", "tensorrt"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
BACKENDS: tuple[str, ...] = get_args(Backend)
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: Precisions each concrete backend runs, per device type.
SUPPORTED = {
    ("torch", "cpu"): ("fp32", "bf16"),
    ("torch", "cuda"): ("fp32", "bf16", "fp16"),
    ("onnxruntime", "cpu"): ("fp32",),
    ("onnxruntime", "cuda"): ("fp32",),
    ("openvino", "cpu"): ("fp32", "bf16"),
    ("tensorrt", "cuda"): ("fp16", "bf16", "fp32"),
}


@dataclass(frozen=True, slots=True)
class RuntimeRequest:
    """What a job asks for one model (see the module docstring)."""

    backend: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidInputError(
                f"expected a backend among {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.precision not in PRECISIONS:
            raise InvalidInputError(
                f"expected a precision among {', '.join(PRECISIONS)}, got {self.precision!r}"
            )

    def __str__(self) -> str:
        return f"{self.backend}/{self.precision}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One concrete runtime: a backend at a precision."""

    backend: str
    precision: str

    @property
    def name(self) -> str:
        """e.g. "openvino-bf16", as runtimes name themselves."""
        return f"{self.backend}-{self.precision}"


REFERENCE = Candidate("torch", "fp32")


@dataclass(frozen=True, slots=True)
class DeviceTraits:
    """What the device offers: its type ("cpu" or "cuda"), bf16 support, installed runtimes."""

    device_type: str
    bf16: bool
    installed: frozenset[str]


def _usual_precision(backend: str, traits: DeviceTraits) -> str:
    if backend == "tensorrt":
        return "fp16"
    if traits.device_type == "cuda" and backend == "torch":
        return "bf16" if traits.bf16 else "fp16"
    if backend == "openvino" and traits.bf16:
        return "bf16"
    return "fp32"


def _auto(traits: DeviceTraits) -> list[Candidate]:
    if traits.device_type == "cuda":
        order = [Candidate("tensorrt", "fp16")]
        order += [Candidate("torch", "bf16")] if traits.bf16 else []
        order += [Candidate("torch", "fp16"), REFERENCE]
    else:
        order = [Candidate("openvino", "bf16")] if traits.bf16 else []
        order += [Candidate("openvino", "fp32"), Candidate("onnxruntime", "fp32"), REFERENCE]
    return [c for c in order if c.backend == "torch" or c.backend in traits.installed]


def candidates(request: RuntimeRequest, traits: DeviceTraits) -> list[Candidate]:
    """The runtimes to try for `request` on a device with `traits`, most preferred first.

    Raises:
        InvalidInputError: a named backend that is not installed or does not run on the device,
            or a precision it does not run there (one line naming what to choose instead).
    """
    if request.backend == "auto":
        found = _auto(traits)
        if request.precision != "auto":
            found = [c for c in found if c.precision == request.precision]
        if not found:
            raise InvalidInputError(
                f"expected a runtime with precision {request.precision} on "
                f"{traits.device_type}, found none installed"
            )
        return found
    supported = SUPPORTED.get((request.backend, traits.device_type))
    if supported is None:
        raise InvalidInputError(
            f"expected a backend that runs on {traits.device_type}, got {request.backend}"
        )
    if request.backend != "torch" and request.backend not in traits.installed:
        raise InvalidInputError(
            f"expected {request.backend} to be installed for backend {request.backend}, "
            "it is not (pip install 'autolabel[onnx]', or choose another backend)"
        )
    precision = request.precision
    if precision == "auto":
        precision = _usual_precision(request.backend, traits)
    if precision not in supported or (precision == "bf16" and not traits.bf16):
        raise InvalidInputError(
            f"expected a precision {request.backend} runs on this {traits.device_type} "
            f"({', '.join(p for p in supported if p != 'bf16' or traits.bf16)}), got {precision}"
        )
    return [Candidate(request.backend, precision)]
