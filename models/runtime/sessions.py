"""Compiled ONNX graphs behind one call: named numpy inputs in, named numpy outputs back.

`GraphRunner` is what the exported segmenter (`autolabel.models.runtime.sam_onnx.ExportedSam`)
and the exported detector image side (`autolabel.models.grounding_dino.runtime`) call, so that
ONNX Runtime and OpenVINO are interchangeable below them:

    ort_runner(path, providers=["CPUExecutionProvider"])          ONNX Runtime, float32
    openvino_runner(path, precision="bf16")                         OpenVINO CPU, f32 or bf16

OpenVINO's bf16 hint runs the heavy layers in bfloat16 on CPUs with AVX-512 BF16 or AMX and
keeps its own list of layers in float32; on other CPUs it runs float32.
"""

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from autolabel.models.errors import InvalidInputError

Arrays = Mapping[str, npt.NDArray[Any]]
#: Held by every ONNX export: `torch.onnx.export` keeps process-wide state and fails when two
#: threads (two shards of one worker) export at once.
ONNX_EXPORT_LOCK = threading.Lock()
OpenVinoPrecision = Literal["fp32", "bf16"]
_OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16"}


class GraphRunner(Protocol):
    """One compiled graph: `runner(inputs, output_names)` -> the outputs, in that order."""

    def __call__(
        self, inputs: Arrays, output_names: Sequence[str]
    ) -> list[npt.NDArray[np.float32]]: ...


class _OrtRunner:
    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(
        self, inputs: Arrays, output_names: Sequence[str]
    ) -> list[npt.NDArray[np.float32]]:
        return list(self.session.run(list(output_names), dict(inputs)))


class _OpenVinoRunner:
    """A compiled model and its infer requests, one per call in flight (an OpenVINO infer
    request must not run in two threads at once; shards of one worker share the runner).

    The requests are owned here, not by the calling threads: they are released with the
    compiled model, never by a thread's teardown after it."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def __call__(
        self, inputs: Arrays, output_names: Sequence[str]
    ) -> list[npt.NDArray[np.float32]]:
        with self.lock:
            request = self.idle.pop() if self.idle else self.compiled.create_infer_request()
        try:
            result = request.infer(dict(inputs))
            return [np.array(result[self.compiled.output(name)]) for name in output_names]
        finally:
            with self.lock:
                self.idle.append(request)


class _StaticOpenVinoRunner:
    """Compiles the graph once per set of input shapes it meets, with those shapes fixed: on the
    CPU a static GroundingDINO graph runs about 20 % faster than the dynamic one. After
    `max_shapes` shape sets, further ones run in one dynamic compilation."""

    def __init__(self, compile_for: Any, max_shapes: int) -> None:
        self.compile_for = compile_for
        self.max_shapes = max_shapes
        self.runners: dict[tuple[tuple[int, ...], ...], _OpenVinoRunner] = {}
        self.dynamic: _OpenVinoRunner | None = None
        self.lock = threading.Lock()

    def __call__(
        self, inputs: Arrays, output_names: Sequence[str]
    ) -> list[npt.NDArray[np.float32]]:
        key = tuple(tuple(int(d) for d in inputs[name].shape) for name in sorted(inputs))
        with self.lock:
            runner = self.runners.get(key)
            if runner is None and len(self.runners) < self.max_shapes:
                shapes = {name: list(inputs[name].shape) for name in inputs}
                runner = self.runners[key] = _OpenVinoRunner(self.compile_for(shapes))
            if runner is None:
                if self.dynamic is None:
                    self.dynamic = _OpenVinoRunner(self.compile_for(None))
                runner = self.dynamic
        return runner(inputs, output_names)


def ort_runner(
    path: Path, *, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int | None = None
) -> GraphRunner:
    """ONNX Runtime session of `path` with full graph optimisation."""
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    return _OrtRunner(onnxruntime.InferenceSession(str(path), options, providers=list(providers)))


def openvino_runner(
    path: Path,
    *,
    precision: OpenVinoPrecision = "fp32",
    threads: int | None = None,
    static_shapes: int = 0,
) -> GraphRunner:
    """OpenVINO CPU compilation of `path` (latency hint: one request at a time, all cores).

    Args:
        static_shapes: When > 0, compile once per set of input shapes met (up to this many;
            see `_StaticOpenVinoRunner`) instead of once with the graph's dynamic axes.
    """
    if precision not in _OPENVINO_HINTS:
        raise InvalidInputError(f"expected OpenVINO precision fp32 or bf16, got {precision!r}")
    import openvino  # type: ignore[import-untyped]

    core = openvino.Core()
    config = {"INFERENCE_PRECISION_HINT": _OPENVINO_HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = str(threads)

    def compile_for(shapes: dict[str, list[int]] | None) -> Any:
        model = core.read_model(str(path))
        if shapes is not None:
            model.reshape({name: openvino.PartialShape(shape) for name, shape in shapes.items()})
        return core.compile_model(model, "CPU", config)

    if static_shapes > 0:
        return _StaticOpenVinoRunner(compile_for, static_shapes)
    return _OpenVinoRunner(compile_for(None))


def as_numpy(tensor: Tensor, dtype: type[np.generic] = np.float32) -> npt.NDArray[Any]:
    """A contiguous CPU numpy copy (or view) of `tensor` in `dtype`."""
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)


def as_tensor(array: npt.NDArray[Any]) -> Tensor:
    """A float32 CPU tensor of a runtime's output."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
