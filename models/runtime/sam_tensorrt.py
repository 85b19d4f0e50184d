"""TensorRT engines of EfficientViT-SAM's ONNX graphs (`autolabel.models.runtime.sam_onnx`).

`build_engine` compiles one exported graph into an engine for the GPU it runs on, with one
optimisation profile (`encoder_profile`, `decoder_profile`); `load_tensorrt_sam` loads an encoder
and a decoder engine as a `SegmenterBackend`.

An all-fp16 EfficientViT-SAM encoder gives mIoU 0 (mit-han-lab/efficientvit issues 113 and 142:
LayerNorm overflows; 116: so does the attention), so fp16 and bf16 engines keep these layers in
float32 (`fp32_layer_names`, under `OBEY_PRECISION_CONSTRAINTS`). Only layers whose outputs are
all floating point count; a layer's *scope* is its name up to the last "/" (the ONNX parser
names layers after the exporter's nodes, e.g. "/norm/ReduceMean" has the scope "/norm"):

1. every NORMALIZATION and SOFTMAX layer (ONNX LayerNormalization and Softmax);
2. REDUCE, ELEMENTWISE and UNARY layers of a *normalisation scope*: one that holds a floating
   REDUCE layer (the mean and variance of a decomposed LayerNorm, as `SamLayerNorm2d` exports),
   or whose last part is named like a norm ("norm", "norm1", "LayerNorm", "layer_norm");
3. MATRIX_MULTIPLY, SOFTMAX, REDUCE, ELEMENTWISE and UNARY layers of an *attention scope*: one
   with a part containing "context_module" (EfficientViT's LiteMLA: both MatMuls, the eps add,
   the division by the normaliser and the block's residual add), "attn" or "attention" (SAM's
   two-way transformer, its q/k/v/out projections included).

Convolutions, activations and data movement stay in reduced precision. Build the small box
decoder in fp32, as the torch and OpenVINO paths run it. TensorRT is imported lazily; functions
that need it take an optional `trt` module, so tests can pass a fake.
"""

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from autolabel.models.errors import InvalidInputError, RuntimeUnavailableError
from autolabel.models.runtime import sam_onnx

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16")
DEFAULT_WORKSPACE_BYTES = 4 << 30
(_IMAGES,), (_EMBEDDINGS,) = sam_onnx.ENCODER_INPUTS, sam_onnx.ENCODER_OUTPUTS
_BOXES = sam_onnx.DECODER_INPUTS[1]

_FLOAT_DTYPES = frozenset({"FLOAT", "HALF", "BF16"})
_ALWAYS_FP32 = frozenset({"NORMALIZATION", "SOFTMAX"})
_NORM_SCOPE_FP32 = frozenset({"REDUCE", "ELEMENTWISE", "UNARY"})
_ATTENTION_SCOPE_FP32 = frozenset({"MATRIX_MULTIPLY", "SOFTMAX", "REDUCE", "ELEMENTWISE", "UNARY"})
_NORM_NAME = re.compile(r"(.*[._])?(layer_?norm\w*|norm\d*)", re.IGNORECASE)
_ATTENTION_NAME = re.compile(r"context_module|attn|attention", re.IGNORECASE)
_LOG_LEVELS = {"INTERNAL_ERROR": logging.ERROR, "ERROR": logging.ERROR, "WARNING": logging.WARNING}
_log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    """The `tensorrt` module; `RuntimeUnavailableError` when `import tensorrt` fails."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:
        raise RuntimeUnavailableError(
            f"TensorRT is not installed here (import tensorrt failed: {_one_line(str(exc))})"
        ) from exc
    return tensorrt


def tensorrt_available() -> bool:
    """Whether `import tensorrt` works on this machine."""
    try:
        import_tensorrt()
    except RuntimeUnavailableError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileShapes:
    """The shapes one dynamic engine input accepts (a TensorRT optimisation profile entry).

    Attributes:
        name: Input name in the ONNX graph, e.g. "images".
        min_shape: Smallest shape.
        opt_shape: Shape TensorRT tunes its kernels for.
        max_shape: Largest shape; larger inputs must be split by the caller.
    """

    name: str
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shapes = (self.min_shape, self.opt_shape, self.max_shape)
        same_rank = len({len(shape) for shape in shapes}) == 1
        if not same_rank or not all(1 <= a <= b <= c for a, b, c in zip(*shapes, strict=True)):
            raise InvalidInputError(
                f"expected 1 <= min <= opt <= max shapes of one rank for {self.name}, got {shapes}"
            )


def encoder_profile(
    input_size: int, *, max_batch: int = 64, opt_batch: int = 32
) -> tuple[ProfileShapes, ...]:
    """Profile of the encoder's (B, 3, S, S) "images": B from 1 to `max_batch`, tuned for
    `min(opt_batch, max_batch)`."""
    return (_rows(_IMAGES, (3, input_size, input_size), max_batch, opt_batch),)


def decoder_profile(*, max_boxes: int = 256, opt_boxes: int = 16) -> tuple[ProfileShapes, ...]:
    """Profile of the box decoder's (N, 4) "boxes": N from 1 to `max_boxes`, tuned for
    `min(opt_boxes, max_boxes)`. The (1, 256, 64, 64) embedding input is static."""
    return (_rows(_BOXES, (4,), max_boxes, opt_boxes),)


def _rows(name: str, row: tuple[int, ...], max_rows: int, opt_rows: int) -> ProfileShapes:
    opt, last = (max(1, min(opt_rows, max_rows)), *row), (max_rows, *row)
    return ProfileShapes(name=name, min_shape=(1, *row), opt_shape=opt, max_shape=last)


@dataclass(frozen=True, slots=True)
class _Layer:
    name: str
    kind: str
    scope: str
    floating: bool


def _enum_name(value: Any) -> str:
    """'HALF' for trt.DataType.HALF (pybind11 enums have `.name`; str gives 'DataType.HALF')."""
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else str(value).rsplit(".", 1)[-1]


def _layers(network: Any) -> list[_Layer]:
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        dtypes = [_enum_name(layer.get_output(j).dtype) for j in range(layer.num_outputs)]
        name = str(layer.name)
        scope = name.rsplit("/", 1)[0] if "/" in name else ""
        floating = bool(dtypes) and all(dtype in _FLOAT_DTYPES for dtype in dtypes)
        layers.append(_Layer(name, _enum_name(layer.type), scope, floating))
    return layers


def fp32_layer_names(network: Any) -> list[str]:
    """Names of the layers of a parsed `trt.INetworkDefinition` that reduced-precision engines
    keep in float32 (the rule is in the module docstring), in network order."""
    layers = [layer for layer in _layers(network) if layer.floating]
    norm_scopes = {
        layer.scope
        for layer in layers
        if layer.kind == "REDUCE" or _NORM_NAME.fullmatch(layer.scope.rsplit("/", 1)[-1])
    } - {""}
    return [
        layer.name
        for layer in layers
        if layer.kind in _ALWAYS_FP32
        or (layer.kind in _NORM_SCOPE_FP32 and layer.scope in norm_scopes)
        or (layer.kind in _ATTENTION_SCOPE_FP32 and _ATTENTION_NAME.search(layer.scope))
    ]


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: Precision,
    profile: Sequence[ProfileShapes],
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    trt: Any | None = None,
) -> list[str]:
    """Compile the ONNX graph `onnx_path` into a TensorRT engine at `engine_path`.

    The engine is written to `engine_path` + ".part" and renamed, so `engine_path` is either the
    old file or a whole engine. fp32 engines run true float32 (TF32 off); fp16 and bf16 engines
    keep `fp32_layer_names` in float32.

    Args:
        onnx_path: An exported encoder or box decoder.
        engine_path: Where the engine goes (it runs on this GPU model and TensorRT version only).
        precision: "fp32", "fp16" or "bf16".
        profile: Shapes of every dynamic input (`encoder_profile` or `decoder_profile`).
        workspace_bytes: Most scratch memory a layer may use.
        trt: The `tensorrt` module (default: imported here).

    Returns:
        Names of the layers kept in float32 (empty for fp32).

    Raises:
        InvalidInputError: Unknown precision, unknown profile input, or an unparsable graph.
        RuntimeUnavailableError: TensorRT is missing, lacks bf16, or built no engine.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"expected precision in {PRECISIONS}, got {precision!r}")
    trt = trt if trt is not None else import_tensorrt()
    logger = _recording_logger(trt)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # TensorRT 8
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        described = "; ".join(f"node {error.node()}: {error.desc()}" for error in errors)
        raise InvalidInputError(_one_line(f"TensorRT cannot parse {onnx_path}: {described}"))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    kept = _set_precision(trt, config, network, precision)
    config.add_optimization_profile(_optimization_profile(builder, network, profile))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = logger.errors[-1] if logger.errors else "no error was logged"
        raise RuntimeUnavailableError(
            f"TensorRT built no {precision} engine of {onnx_path}: {_one_line(reason)}"
        )
    _write_atomically(engine_path, serialized)
    _log.info("built %s (%s, %d layers kept in fp32)", engine_path, precision, len(kept))
    return kept


def _set_precision(trt: Any, config: Any, network: Any, precision: Precision) -> list[str]:
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
        return []
    flag = getattr(trt.BuilderFlag, precision.upper(), None)
    if flag is None:
        version = getattr(trt, "__version__", "?")
        raise RuntimeUnavailableError(f"TensorRT {version} cannot build {precision} engines")
    config.set_flag(flag)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    kept = fp32_layer_names(network)
    wanted = set(kept)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name in wanted:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
    return kept


def _optimization_profile(builder: Any, network: Any, shapes: Sequence[ProfileShapes]) -> Any:
    inputs = sorted(network.get_input(i).name for i in range(network.num_inputs))
    profile = builder.create_optimization_profile()
    for entry in shapes:
        if entry.name not in inputs:
            raise InvalidInputError(f"expected profile inputs among {inputs}, got {entry.name!r}")
        profile.set_shape(entry.name, entry.min_shape, entry.opt_shape, entry.max_shape)
    return profile


def _write_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.part")
    try:
        with part.open("wb") as handle:
            handle.write(memoryview(data))
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _recording_logger(trt: Any) -> Any:
    """A `trt.ILogger` that forwards to `logging` and keeps the error messages."""

    class _Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = _LOG_LEVELS.get(_enum_name(severity), logging.DEBUG)
            if level >= logging.ERROR:
                self.errors.append(msg)
            _log.log(level, "TensorRT: %s", msg)

    return _Logger()


class EngineRunner:
    """A deserialised TensorRT engine and one execution context on a CUDA device.

    Inputs are copied to float32 CUDA tensors; outputs are float32 CUDA tensors that TensorRT
    writes on the device's current torch stream, so later torch work is ordered after it. Not
    thread-safe: one runner per thread.

    Args:
        engine_path: A file written by `build_engine` on this GPU and TensorRT version.
        device: The CUDA device to run on.
        trt: The `tensorrt` module (default: imported here).
    """

    def __init__(self, engine_path: Path, *, device: torch.device, trt: Any | None = None) -> None:
        if device.type != "cuda":
            raise InvalidInputError(f"expected a CUDA device, got {device}")
        if not torch.cuda.is_available():
            raise RuntimeUnavailableError("CUDA is not available here; TensorRT needs it")
        trt = trt if trt is not None else import_tensorrt()
        self.device = device
        self._logger = _recording_logger(trt)
        with torch.cuda.device(device):
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                reason = self._logger.errors[-1] if self._logger.errors else "unreadable file"
                raise RuntimeUnavailableError(f"TensorRT cannot load {engine_path}: {reason}")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        dtypes = {name: _enum_name(self.engine.get_tensor_dtype(name)) for name in names}
        if set(dtypes.values()) != {"FLOAT"}:
            raise InvalidInputError(f"expected float32 engine inputs and outputs, got {dtypes}")
        modes = {name: _enum_name(self.engine.get_tensor_mode(name)) for name in names}
        self.output_names = [name for name in names if modes[name] == "OUTPUT"]

    def max_rows(self, name: str) -> int:
        """Largest dimension 0 that profile 0 accepts for the dynamic input `name`."""
        _, _, largest = self.engine.get_tensor_profile_shape(name, 0)
        return int(largest[0])

    def __call__(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Run the engine once on `inputs` (by input name); returns every output by name."""
        context, device = self.context, self.device
        with torch.cuda.device(device):
            feeds = {name: t.to(device, torch.float32).contiguous() for name, t in inputs.items()}
            for name, tensor in feeds.items():
                if not context.set_input_shape(name, tuple(tensor.shape)):
                    shape = tuple(tensor.shape)
                    raise InvalidInputError(f"{name} {shape} is outside the engine's profile")
                context.set_tensor_address(name, tensor.data_ptr())
            outputs = {}
            for name in self.output_names:
                shape = tuple(context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=torch.float32, device=device)
                context.set_tensor_address(name, outputs[name].data_ptr())
            if not context.execute_async_v3(torch.cuda.current_stream(device).cuda_stream):
                raise RuntimeUnavailableError("TensorRT failed to enqueue the engine")
        return outputs


class TensorRtSam:
    """`SegmenterBackend` of EfficientViT-SAM's encoder and box decoder engines.

    Batches and box sets larger than the engines' profiles are split and the results joined.

    Args:
        encoder: Runner of the encoder engine (input "images" (B, 3, S, S)).
        decoder: Runner of the box decoder engine (inputs "image_embeddings", "boxes").
        input_size: S of the encoder input.
        precision: What the encoder engine was built in; names the backend ("tensorrt-fp16").
    """

    def __init__(
        self, encoder: EngineRunner, decoder: EngineRunner, *, input_size: int, precision: Precision
    ) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.input_size = input_size
        self.name = f"tensorrt-{precision}"
        self.max_batch = encoder.max_rows(_IMAGES)
        self.max_boxes = decoder.max_rows(_BOXES)

    def encode(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalised images -> (B, 256, 64, 64) float32 embeddings (on the GPU)."""
        size = self.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size) or len(images) == 0:
            raise InvalidInputError(f"expected (B, 3, {size}, {size}), got {tuple(images.shape)}")
        chunks = torch.split(images, self.max_batch)
        return torch.cat([self.encoder({_IMAGES: chunk})[_EMBEDDINGS] for chunk in chunks])

    def decode_boxes(self, embedding: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(1, 256, 64, 64) embedding, (N, 4) 1024-frame xyxy -> (N, 1, 256, 256) logits and
        (N, 1) predicted IoU (float32, on the GPU)."""
        if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
            raise InvalidInputError(f"expected (N >= 1, 4) boxes, got {tuple(boxes.shape)}")
        embedding = embedding.to(self.decoder.device, torch.float32)
        chunks = torch.split(boxes, self.max_boxes)
        results = [self.decoder({_EMBEDDINGS: embedding, _BOXES: chunk}) for chunk in chunks]
        logits, iou = ([result[name] for result in results] for name in sam_onnx.DECODER_OUTPUTS)
        return torch.cat(logits), torch.cat(iou)


def load_tensorrt_sam(
    engines: tuple[Path, Path],
    *,
    input_size: int,
    precision: Precision,
    device: torch.device,
    trt: Any | None = None,
) -> TensorRtSam:
    """`TensorRtSam` of the (encoder, box decoder) engine files that `build_engine` wrote."""
    trt = trt if trt is not None else import_tensorrt()
    encoder, decoder = (EngineRunner(path, device=device, trt=trt) for path in engines)
    return TensorRtSam(encoder, decoder, input_size=input_size, precision=precision)
