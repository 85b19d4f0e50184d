"""Inference-time preparation: BatchNorm folding, dtype, channels_last, torch.compile.

`optimize_for_inference` returns a copy whose image-encoder BatchNorms are folded into the
preceding convolutions (the state dict changes, so save checkpoints from the unfolded model).
Outputs stay within float tolerance of the unfolded model (see the parity tests).

Defaults per device ("auto"): on CUDA the encoder runs in bfloat16 where the GPU has it natively
(Ampere and later), else float16; on the CPU in float32. The layers that overflow in float16
(efficientvit #113/#116/#142) compute in float32 whatever the encoder dtype: the LiteMLA linear
attention (`relu_linear_attention` upcasts) and the channel LayerNorm (`LayerNorm2d` upcasts,
and its parameters are kept in float32 here). `torch.compile` is an option: on CUDA it records
CUDA graphs ("reduce-overhead"; the encoder input is a fixed (B, 3, S, S) per batch size), on
the CPU it freezes the weights; if compiling fails the encoder runs eagerly after a warning.
"""

import copy
import logging
from collections.abc import Callable
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from autolabel.models.efficientvit_sam.conv import ConvLayer
from autolabel.models.efficientvit_sam.encoder import LayerNorm2d
from autolabel.models.efficientvit_sam.sam import EfficientViTSam
from autolabel.models.errors import InvalidInputError

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal[
    "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
]
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Modules whose parameters stay float32 in a half-precision encoder (they compute in float32).
_FP32_MODULES = (LayerNorm2d,)


@torch.no_grad()
def fold_batchnorm(layer: ConvLayer) -> None:
    """Fold `layer.norm` (BatchNorm2d, eval statistics) into `layer.conv` in place."""
    norm = layer.norm
    if not isinstance(norm, nn.BatchNorm2d) or norm.running_var is None:
        return
    conv = layer.conv
    running_mean = norm.running_mean
    if running_mean is None:
        return
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(running_mean)
    fused_bias = (bias - running_mean) * scale + norm.bias
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
    ).to(conv.weight.device, conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    fused.bias = nn.Parameter(fused_bias)
    layer.conv = fused
    layer.norm = None


def optimize_for_inference(model: EfficientViTSam) -> EfficientViTSam:
    """A copy of `model` in eval mode with every encoder BatchNorm folded into its conv."""
    optimized = copy.deepcopy(model).eval()
    for module in optimized.image_encoder.modules():
        if isinstance(module, ConvLayer):
            fold_batchnorm(module)
    return optimized


def resolve_dtype(dtype: Precision | torch.dtype, device: torch.device | str) -> torch.dtype:
    """Map "auto"/"fp32"/"bf16"/"fp16" (or a torch dtype) to a dtype valid on `device`.

    "auto" is bfloat16 on a CUDA device with native bfloat16 (compute capability 8.0+), float16
    on an older CUDA device, and float32 elsewhere.

    Raises:
        InvalidInputError: unknown dtype, or float16 on a non-CUDA device.
    """
    is_cuda = torch.device(device).type == "cuda"
    if dtype == "auto":
        if not is_cuda:
            return torch.float32
        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        return torch.bfloat16 if native_bf16 else torch.float16
    resolved = _DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in _DTYPES.values() or resolved is None:
        raise InvalidInputError(f"expected dtype one of {sorted(_DTYPES)} or 'auto', got {dtype!r}")
    if resolved == torch.float16 and not is_cuda:
        raise InvalidInputError(
            f"fp16 inference needs a CUDA device, got {device!r}; use 'bf16' or 'fp32' on CPU"
        )
    return resolved


def resolve_compile_mode(mode: CompileMode, device: torch.device | str) -> str:
    """Map "auto" to "reduce-overhead" (CUDA graphs) on CUDA and "default" elsewhere.

    Raises:
        InvalidInputError: an unknown mode.
    """
    modes = get_args(CompileMode)
    if mode not in modes:
        raise InvalidInputError(f"expected compile_mode one of {list(modes)}, got {mode!r}")
    if mode != "auto":
        return mode
    return "reduce-overhead" if torch.device(device).type == "cuda" else "default"


def _root_cause(exc: BaseException) -> str:
    """`Type: first line` of the innermost exception a compiler error wraps."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, BaseException):
        exc = inner
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class CompiledForward:
    """A `torch.compile`d forward that falls back to the eager one if compiling fails.

    Compilation happens on the first call per input shape. If it raises a torch compiler error
    (`torch._dynamo.exc.TorchDynamoException`, which `InductorError` and `BackendCompilerFailed`
    are), the eager forward runs; when that succeeds a warning is logged and the eager forward
    is used from then on. An input the eager forward rejects raises the eager error and keeps
    the compiled forward.

    Args:
        eager: The forward to compile.
        mode: A resolved `CompileMode` (not "auto").
        backend: The torch.compile backend (tests pass a failing one).
    """

    def __init__(
        self, eager: Callable[[Tensor], Tensor], *, mode: str, backend: str | Callable[..., Any]
    ) -> None:
        # Inference-only weights: inductor may freeze them (constant folding, pre-packing).
        options: dict[str, Any] = {"freezing": True}
        if mode != "default":
            options.update(torch._inductor.list_mode_options(mode))
        self.eager = eager
        self.mode = mode
        self.compiled: Callable[[Tensor], Tensor] | None = torch.compile(
            eager, backend=backend, options=options, dynamic=False
        )

    def __call__(self, x: Tensor) -> Tensor:
        """Run the compiled forward, or the eager one (see the class docstring)."""
        compiled = self.compiled
        if compiled is not None:
            try:
                return compiled(x)
            except torch._dynamo.exc.TorchDynamoException as exc:
                out = self.eager(x)
                logger.warning(
                    "torch.compile (mode %r) of the image encoder failed, running it eagerly: %s",
                    self.mode,
                    _root_cause(exc),
                )
                self.compiled = None
                return out
        return self.eager(x)


def prepare_for_inference(
    model: EfficientViTSam,
    *,
    device: torch.device | str = "cpu",
    dtype: Precision | torch.dtype = "auto",
    fold_bn: bool = True,
    channels_last: bool = True,
    compile_encoder: bool = False,
    compile_mode: CompileMode = "auto",
) -> EfficientViTSam:
    """A copy of `model` ready for fast inference; the input model is not modified.

    Args:
        model: A built (and loaded) model.
        device: Target device.
        dtype: Image-encoder precision: "auto" (see `resolve_dtype`: bf16 or fp16 on CUDA, fp32
            on CPU), "fp32", "bf16" or "fp16" (CUDA only). The prompt encoder and mask decoder
            stay in float32, and so do the encoder's LayerNorm2d parameters.
        fold_bn: Fold encoder BatchNorms into their convs (`optimize_for_inference`), in float32
            before the cast.
        channels_last: Store encoder 4-D weights in channels_last memory format
            (`encode_images` then feeds channels_last inputs). With `fold_bn` this is the
            fastest eager CPU path measured here (2 threads: L0 ~1.4x, XL0 ~1.4x the plain
            model, within 5e-6 of its embedding).
        compile_encoder: Wrap the image encoder's forward with `torch.compile` (a
            `CompiledForward`: falls back to eager with a logged warning if compiling fails).
            The first call per batch size compiles (about 25-35 s for L0 on 2 CPU cores).
        compile_mode: "auto" (see `resolve_compile_mode`), "default" (inductor with weight
            freezing, best on CPU), or torch's "reduce-overhead" (CUDA graphs: call the encoder
            from one thread at a time; its outputs are overwritten by the next call, which
            `encode_images` allows for), "max-autotune" or "max-autotune-no-cudagraphs" (long
            compiles), each with weight freezing.

    Returns:
        The prepared model in eval mode on `device`.
    """
    resolved = resolve_dtype(dtype, device)
    mode = resolve_compile_mode(compile_mode, device)
    prepared = optimize_for_inference(model) if fold_bn else copy.deepcopy(model).eval()
    prepared = prepared.to(device)
    prepared.image_encoder.to(dtype=resolved)
    for module in prepared.image_encoder.modules():
        if isinstance(module, _FP32_MODULES):
            module.float()
    if channels_last:
        for param in prepared.image_encoder.parameters():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=torch.channels_last)
    if compile_encoder:
        encoder = prepared.image_encoder
        encoder.forward = CompiledForward(  # type: ignore[method-assign]
            encoder.forward, mode=mode, backend="inductor"
        )
    return prepared
