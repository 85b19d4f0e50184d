"""TensorRT engines of EfficientViT-SAM: the fp32-layer rule, profiles, building and the backend.

TensorRT cannot be installed on the CPU machines, so the build logic runs against a fake `trt`
module whose ONNX parser turns a real export of the tiny test model into layers named as
TensorRT's parser names them (after the ONNX nodes), typed by ONNX shape inference. The rule is
therefore checked against the exporter's real node names. The `gpu` test builds a real L0 engine
and runs the parity gate where TensorRT and CUDA exist.
"""

import enum
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from autolabel.models.efficientvit_sam.optimize import optimize_for_inference
from autolabel.models.errors import InvalidInputError, RuntimeUnavailableError
from autolabel.models.registry import create_model
from autolabel.models.runtime.backends import SegmenterBackend, TorchSegmenter
from autolabel.models.runtime.parity import sam_parity
from autolabel.models.runtime.sam_onnx import export_box_decoder, export_encoder
from autolabel.models.runtime.sam_tensorrt import (
    EngineRunner,
    ProfileShapes,
    TensorRtSam,
    build_engine,
    decoder_profile,
    encoder_profile,
    fp32_layer_names,
    import_tensorrt,
    load_tensorrt_sam,
    tensorrt_available,
)

#: The layer TensorRT's ONNX parser makes of each op in the exported graphs ("KIND Op Op | ...");
#: Constant nodes become weights, not layers.
PARSER_OPS = """ELEMENTWISE Add Sub Mul Div Pow Equal | UNARY Sqrt Erf Sin Cos
| ACTIVATION Relu Tanh | MATRIX_MULTIPLY MatMul Gemm | SHUFFLE Reshape Transpose Unsqueeze
| SLICE Slice Expand Pad | FILL Range ConstantOfShape | CONVOLUTION Conv | REDUCE ReduceMean
| DECONVOLUTION ConvTranspose | SOFTMAX Softmax | NORMALIZATION LayerNormalization | CAST Cast
| CONCATENATION Concat | RESIZE Resize | SHAPE Shape | GATHER Gather | IDENTITY Identity
| SELECT Where | SCATTER ScatterND"""
GROUPS = [group.split() for group in PARSER_OPS.split("|")]
T = LayerType = enum.Enum("LayerType", [kind for kind, *_ in GROUPS])
OP_LAYERS = {op: LayerType[kind] for kind, *ops in GROUPS for op in ops}
DataType = enum.Enum("DataType", "FLOAT HALF BF16 INT32 INT64 BOOL")
ONNX_DTYPES = dict(zip((1, 10, 16, 6, 7, 9), DataType, strict=True))
Severity = enum.Enum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE")
BuilderFlag = enum.Enum("BuilderFlag", "FP16 BF16 TF32 OBEY_PRECISION_CONSTRAINTS")
BuilderFlag86 = enum.Enum("BuilderFlag86", "FP16 TF32 OBEY_PRECISION_CONSTRAINTS")  # no bf16

MLA = "/backbone/stages.4/op_list.1/context_module"
NORM_OPS = ("ReduceMean", "Sub", "Mul", "ReduceMean_1", "Add", "Sqrt", "Div", "Mul_1", "Add_1")
#: What the rule keeps in float32 in the test model's encoder: LiteMLA's two MatMuls, eps add and
#: division, and the block's residual add; every piece of the final (decomposed) LayerNorm2d.
ENCODER_FP32 = {f"{MLA}/main/{op}" for op in ("MatMul", "MatMul_1", "Add", "Div")} | {f"{MLA}/Add"}
ENCODER_FP32 |= {f"/norm/{op}" for op in NORM_OPS}
#: build_engine arguments for the test model's encoder.
FP16: dict[str, Any] = {"precision": "fp16", "profile": encoder_profile(512)}
BF16: dict[str, Any] = {"precision": "bf16", "profile": encoder_profile(512)}


class Layer:
    def __init__(self, name: str, kind: Any, outputs: list[Any]) -> None:
        self.name, self.type, self.precision = name, kind, None
        self.outputs = [SimpleNamespace(dtype=dtype) for dtype in outputs]
        self.output_types: dict[int, Any] = {}
        self.num_outputs, self.get_output = len(outputs), self.outputs.__getitem__

    def set_output_type(self, j: int, dtype: Any) -> None:
        self.output_types[j] = dtype


class Network:
    def __init__(self, layers: list[Layer], inputs: tuple[str, ...] = ()) -> None:
        self.layers, self.num_layers, self.get_layer = layers, len(layers), layers.__getitem__
        names = [SimpleNamespace(name=name) for name in inputs]
        self.num_inputs, self.get_input = len(names), names.__getitem__


def parse_onnx(path: Path) -> Network:
    """The layers TensorRT's parser makes of `path`: one per non-Constant node, named after it."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    values = [*graph.value_info, *graph.output, *graph.input]
    dtypes = {value.name: ONNX_DTYPES[value.type.tensor_type.elem_type] for value in values}
    layers = [
        Layer(node.name, OP_LAYERS[node.op_type], [dtypes[out] for out in node.output])
        for node in graph.node
        if node.op_type != "Constant"
    ]
    weights = {init.name for init in graph.initializer}
    return Network(layers, tuple(i.name for i in graph.input if i.name not in weights))


class FakeTrt:
    """The parts of `tensorrt` that `build_engine` uses; one object plays the builder, parser,
    config and profile, and records what was done to it."""

    LayerType, DataType, float32, __version__ = LayerType, DataType, DataType.FLOAT, "8.6-fake"
    MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    NetworkDefinitionCreationFlag = enum.IntEnum("Flag", {"EXPLICIT_BATCH": 0})
    ILogger = type("ILogger", (), {"Severity": Severity})

    def __init__(self, *, flags: Any = BuilderFlag, parse_errors: tuple[str, ...] = ()) -> None:
        self.BuilderFlag, self.parse_errors = flags, parse_errors
        self.num_errors = len(parse_errors)
        self.serialized: Any = b"serialized engine"
        self.network = Network([])
        self.flags: set[Any] = set()
        self.cleared: set[Any] = set()
        self.pools: dict[Any, int] = {}
        self.shapes: list[tuple[Any, ...]] = []
        self.network_flags = -1
        # The builder config and optimisation profile calls, recorded.
        self.set_flag, self.clear_flag = self.flags.add, self.cleared.add
        self.set_memory_pool_limit = self.pools.__setitem__
        self.set_shape = lambda *shape: self.shapes.append(shape)

    def Builder(self, logger: Any) -> "FakeTrt":  # noqa: N802 - the module's class names
        self.logger = logger
        return self

    def OnnxParser(self, network: Network, logger: Any) -> "FakeTrt":  # noqa: N802
        assert network is self.network
        return self

    def create_network(self, flags: int) -> Network:
        self.network_flags = flags
        return self.network

    def parse_from_file(self, path: str) -> bool:
        self.network.__dict__.update(parse_onnx(Path(path)).__dict__)
        return not self.parse_errors

    def get_error(self, i: int) -> Any:
        return SimpleNamespace(node=lambda: i, desc=lambda: self.parse_errors[i])

    def create_builder_config(self) -> "FakeTrt":
        return self

    create_optimization_profile = create_builder_config

    def add_optimization_profile(self, profile: Any) -> None:
        assert profile is self

    def build_serialized_network(self, network: Network, config: Any) -> Any:
        if self.serialized is None:
            self.logger.log(Severity.WARNING, "slow tactic")
            self.logger.log(Severity.ERROR, "no implementation obeys\nthe precision constraints")
        return self.serialized


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The test model's encoder (BatchNorm folded) and box decoder, exported as for TensorRT."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = create_model("efficientvit-sam-test", family="segmenter")
    export_encoder(optimize_for_inference(model), folder / "encoder.onnx")
    export_box_decoder(model, folder / "decoder.onnx")
    return folder / "encoder.onnx", folder / "decoder.onnx"


def test_encoder_keeps_exactly_the_attention_and_layernorm_in_fp32(exported: tuple) -> None:
    network = parse_onnx(exported[0])
    kept = fp32_layer_names(network)
    assert set(kept) == ENCODER_FP32
    assert kept == [layer.name for layer in network.layers if layer.name in ENCODER_FP32]
    # Shape arithmetic in the same scope (int64) and the convolutions stay out.
    assert f"{MLA}/main/Mul" in {layer.name for layer in network.layers}


def test_decoder_keeps_layernorms_softmax_and_attention_in_fp32(exported: tuple) -> None:
    network = parse_onnx(exported[1])
    kept = set(fp32_layer_names(network))
    by_name = {layer.name: layer for layer in network.layers}
    for kind, count in ((T.NORMALIZATION, 9), (T.SOFTMAX, 7)):  # all of them
        assert sum(layer.type is kind for layer in network.layers) == count
        assert sum(by_name[name].type is kind for name in kept) == count
    ops = ("ReduceMean", "Sub", "Pow", "ReduceMean_1", "Add", "Sqrt", "Div", "Mul", "Add_1")
    upscaling_norm = {f"/output_upscaling/output_upscaling.1/{op}" for op in ops}  # LayerNorm2d
    assert upscaling_norm <= kept
    assert {
        "/transformer/layers.0/self_attn/MatMul",
        "/transformer/layers.0/self_attn/Div_3",
    } <= kept
    for name in kept:  # the rest is attention (projections too); no MLP, GELU or positional code
        assert name in upscaling_norm or by_name[name].type is T.NORMALIZATION or "attn" in name
        assert all(out.dtype is DataType.FLOAT for out in by_name[name].outputs)


@pytest.mark.parametrize(
    ("name", "kind", "dtype", "kept"),
    [
        ("/encoder/blocks.0/layer_norm/Mul", T.ELEMENTWISE, DataType.FLOAT, True),
        ("/encoder/blocks.0/LayerNorm/Sqrt", T.UNARY, DataType.FLOAT, True),
        ("/encoder/blocks.0/attention/MatMul", T.MATRIX_MULTIPLY, DataType.FLOAT, True),
        ("/encoder/blocks.0/attention/Div", T.ELEMENTWISE, DataType.INT64, False),
        ("/encoder/blocks.0/attention/qkv/Conv", T.CONVOLUTION, DataType.FLOAT, False),
        ("/encoder/blocks.0/normal_conv/Mul", T.ELEMENTWISE, DataType.FLOAT, False),
        ("/encoder/blocks.0/mlp/MatMul", T.MATRIX_MULTIPLY, DataType.FLOAT, False),
        ("(Unnamed Layer* 7) [ElementWise]", T.ELEMENTWISE, DataType.FLOAT, False),
        ("(Unnamed Layer* 8) [Softmax]", T.SOFTMAX, DataType.HALF, True),
    ],
)
def test_the_rule_on_single_layers(name: str, kind: T, dtype: DataType, kept: bool) -> None:
    reduce_without_scope = Layer("(Unnamed Layer* 9) [Reduce]", T.REDUCE, [DataType.FLOAT])
    network = Network([Layer(name, kind, [dtype]), reduce_without_scope])
    assert (name in fp32_layer_names(network)) is kept


def test_profiles_cover_batches_and_box_counts() -> None:
    (images,) = encoder_profile(1024)
    assert images == ProfileShapes(
        name="images",
        min_shape=(1, 3, 1024, 1024),
        opt_shape=(32, 3, 1024, 1024),
        max_shape=(64, 3, 1024, 1024),
    )
    assert encoder_profile(512, max_batch=8)[0].opt_shape == (8, 3, 512, 512)
    (boxes,) = decoder_profile()
    assert boxes == ProfileShapes(
        name="boxes", min_shape=(1, 4), opt_shape=(16, 4), max_shape=(256, 4)
    )
    with pytest.raises(InvalidInputError, match="expected 1 <= min <= opt <= max"):
        encoder_profile(512, max_batch=0)
    with pytest.raises(InvalidInputError, match="of one rank for boxes"):
        ProfileShapes(name="boxes", min_shape=(1, 4), opt_shape=(2, 4), max_shape=(4,))


@pytest.mark.parametrize(("precision", "flag"), [("fp16", "FP16"), ("bf16", "BF16")])
def test_reduced_engines_obey_fp32_constraints_on_exactly_the_chosen_layers(
    exported: tuple, tmp_path: Path, precision: str, flag: str
) -> None:
    fake, engine = FakeTrt(), tmp_path / "engines" / "encoder.engine"
    kept = build_engine(
        exported[0], engine, precision=precision, profile=encoder_profile(512), trt=fake
    )
    assert fake.flags == {BuilderFlag[flag], BuilderFlag.OBEY_PRECISION_CONSTRAINTS}
    marked = {layer.name for layer in fake.network.layers if layer.precision is DataType.FLOAT}
    assert marked == set(kept) == ENCODER_FP32
    for layer in fake.network.layers:
        expected = dict.fromkeys(range(layer.num_outputs), DataType.FLOAT)
        assert layer.output_types == (expected if layer.name in marked else {})
    assert fake.shapes == [("images", (1, 3, 512, 512), (32, 3, 512, 512), (64, 3, 512, 512))]
    assert fake.pools == {FakeTrt.MemoryPoolType.WORKSPACE: 4 << 30}
    assert fake.network_flags == 1  # EXPLICIT_BATCH
    assert engine.read_bytes() == b"serialized engine"
    assert list(engine.parent.iterdir()) == [engine]


def test_fp32_engine_is_true_float32(exported: tuple, tmp_path: Path) -> None:
    fake = FakeTrt()
    profile = decoder_profile(max_boxes=64, opt_boxes=8)
    engine = tmp_path / "d.engine"
    kept = build_engine(
        exported[1], engine, precision="fp32", profile=profile, trt=fake, workspace_bytes=1 << 30
    )
    assert kept == []
    assert fake.flags == set()
    assert fake.cleared == {BuilderFlag.TF32}
    assert all(layer.precision is None for layer in fake.network.layers)
    assert fake.shapes == [("boxes", (1, 4), (8, 4), (64, 4))]
    assert fake.pools == {FakeTrt.MemoryPoolType.WORKSPACE: 1 << 30}


def test_refusals_are_one_line_errors_and_leave_no_file(exported: tuple, tmp_path: Path) -> None:
    engine = tmp_path / "encoder.engine"
    errors = ("Unsupported op\n  FancyOp", "Invalid weights")
    with pytest.raises(InvalidInputError) as parse:
        build_engine(exported[0], engine, **FP16, trt=FakeTrt(parse_errors=errors))
    message = str(parse.value)
    assert "\n" not in message
    assert message.endswith("node 0: Unsupported op FancyOp; node 1: Invalid weights")
    with pytest.raises(InvalidInputError, match=r"expected profile inputs among \['images'\]"):
        build_engine(
            exported[0], engine, precision="fp16", profile=decoder_profile(), trt=FakeTrt()
        )
    with pytest.raises(RuntimeUnavailableError, match=r"^TensorRT 8.6-fake cannot build bf16"):
        build_engine(exported[0], engine, **BF16, trt=FakeTrt(flags=BuilderFlag86))
    with pytest.raises(InvalidInputError, match="expected precision in"):
        build_engine(exported[0], engine, precision="int8", profile=(), trt=FakeTrt())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("serialized", "error", "match"),
    [
        (None, RuntimeUnavailableError, "obeys the precision constraints$"),
        (
            object(),
            TypeError,
            "bytes-like object is required",
        ),  # fails while the .part file is being written
    ],
)
def test_failed_builds_keep_the_old_engine_and_no_part_file(
    exported: tuple, tmp_path: Path, serialized: Any, error: type, match: str
) -> None:
    engine = tmp_path / "encoder.engine"
    engine.write_bytes(b"previous engine")
    fake = FakeTrt()
    fake.serialized = serialized
    with pytest.raises(error, match=match):
        build_engine(exported[0], engine, **FP16, trt=fake)
    assert engine.read_bytes() == b"previous engine"
    assert list(tmp_path.iterdir()) == [engine]


def test_missing_tensorrt_is_a_one_line_runtime_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        assert not tensorrt_available()
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    assert not tensorrt_available()
    with pytest.raises(RuntimeUnavailableError, match=r"^TensorRT is not installed here") as info:
        import_tensorrt()
    assert "\n" not in str(info.value)
    with pytest.raises(RuntimeUnavailableError, match="TensorRT is not installed"):
        build_engine(Path("x.onnx"), Path("x.engine"), precision="fp16", profile=())
    with pytest.raises(InvalidInputError, match="expected a CUDA device, got cpu"):
        EngineRunner(Path("x.engine"), device=torch.device("cpu"))


class FakeRunner:
    """An `EngineRunner` on the CPU: outputs made from the inputs, calls recorded."""

    def __init__(self, max_rows: int, outputs: Any) -> None:
        self.device, self.limit, self.outputs = torch.device("cpu"), max_rows, outputs
        self.rows: list[int] = []

    def max_rows(self, name: str) -> int:
        return self.limit

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.rows.append(len(inputs.get("images", inputs.get("boxes"))))  # type: ignore[arg-type]
        return self.outputs(inputs)


def fake_encoder(feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Embedding i is filled with image i's first pixel."""
    first = feed["images"][:, :1, :1, :1]
    return {"image_embeddings": first.expand(-1, 256, 64, 64).clone()}


def fake_decoder(feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mask logits of box i: its x0 plus the embedding's mean; its IoU: its y0."""
    boxes, shift = feed["boxes"], feed["image_embeddings"].mean()
    logits = boxes[:, :1, None, None].expand(-1, 1, 256, 256) + shift
    return {"low_res_logits": logits, "iou_predictions": boxes[:, 1:2]}


def test_backend_splits_batches_and_boxes_beyond_the_profile() -> None:
    encoder, decoder = FakeRunner(2, fake_encoder), FakeRunner(3, fake_decoder)
    sam = TensorRtSam(encoder, decoder, input_size=64, precision="fp16")  # type: ignore[arg-type]
    assert isinstance(sam, SegmenterBackend)
    assert sam.name == "tensorrt-fp16"
    images = torch.arange(5.0)[:, None, None, None].expand(5, 3, 64, 64)
    embeddings = sam.encode(images)
    assert encoder.rows == [2, 2, 1]
    assert embeddings.shape == (5, 256, 64, 64)
    torch.testing.assert_close(embeddings[:, 0, 0, 0], torch.arange(5.0))
    boxes = torch.arange(28.0).reshape(7, 4)
    logits, iou = sam.decode_boxes(embeddings[3:4], boxes)
    assert decoder.rows == [3, 3, 1]
    assert (logits.shape, iou.shape) == ((7, 1, 256, 256), (7, 1))
    torch.testing.assert_close(logits[:, 0, 0, 0], boxes[:, 0] + 3.0)
    torch.testing.assert_close(iou[:, 0], boxes[:, 1])
    with pytest.raises(InvalidInputError, match=r"expected \(B, 3, 64, 64\)"):
        sam.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InvalidInputError, match=r"expected \(N >= 1, 4\) boxes"):
        sam.decode_boxes(embeddings[:1], torch.zeros(0, 4))


@pytest.mark.gpu
def test_l0_fp16_engine_passes_the_parity_gate(tmp_path: Path) -> None:
    if not tensorrt_available() or not torch.cuda.is_available():
        pytest.skip("needs TensorRT and CUDA")
    torch.manual_seed(0)
    model = create_model("efficientvit-sam-l0", family="segmenter")
    export_encoder(optimize_for_inference(model), tmp_path / "encoder.onnx")
    export_box_decoder(model, tmp_path / "decoder.onnx")
    size, engines = model.encoder_input_size, (tmp_path / "enc.engine", tmp_path / "dec.engine")
    profile = encoder_profile(size, max_batch=2, opt_batch=2)
    kept = build_engine(tmp_path / "encoder.onnx", engines[0], precision="fp16", profile=profile)
    assert any("context_module" in name for name in kept)
    profile = decoder_profile(max_boxes=4, opt_boxes=4)
    build_engine(tmp_path / "decoder.onnx", engines[1], precision="fp32", profile=profile)
    sam = load_tensorrt_sam(engines, input_size=size, precision="fp16", device=torch.device("cuda"))
    assert sam.max_boxes == 4  # the 6 parity boxes are split in two runs
    report = sam_parity(TorchSegmenter(model), sam, precision="fp16")
    assert report.passed, report.describe()
    assert report.candidate == "tensorrt-fp16"
