"""Official EfficientViT-SAM (mit-han-lab/efficientvit) loader and timing worker.

This file runs in two roles and imports nothing from autolabel:

- As a module, `bench/model_throughput.py` imports its timing helpers (`make_inputs`,
  `time_call`, `measure`), so our model and the official one are timed by the same code.
- As a script, run with a Python that can import the official tree (see bench/README.md), it
  builds the official model and prints one JSON object with its timings on the same inputs:
  `python bench/_official_reference.py --variant l0 --batch-sizes 1 8 --box-counts 1 64`.

The official tree is located with AUTOLABEL_OFFICIAL_EFFICIENTVIT (default: efficientvit-ref
beside the repository). Its code is never copied into this repository.
"""

import argparse
import hashlib
import importlib
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

TREE_ENV = "AUTOLABEL_OFFICIAL_EFFICIENTVIT"
DEFAULT_TREE = Path(__file__).resolve().parents[2] / "efficientvit-ref"
PROMPT_FRAME = 1024
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_OP_SCHEMAS: list[torch.library.Library] = []  # keeps the stand-in op schemas registered


def official_tree() -> Path | None:
    """The official source tree (folder holding the `efficientvit` package), or None."""
    tree = Path(os.environ.get(TREE_ENV, str(DEFAULT_TREE)))
    return tree if (tree / "efficientvit" / "sam_model_zoo.py").is_file() else None


def _import_torchvision() -> None:
    """Import torchvision; if its compiled ops do not load, stand in their schemas and retry.

    A torchvision wheel built for another torch fails with `operator torchvision::nms does not
    exist`. The SAM predictor never calls nms, so defining the two op schemas is enough.
    """
    try:
        importlib.import_module("torchvision")
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")  # type: ignore[no-untyped-call]
        _OP_SCHEMAS.append(lib)
        importlib.import_module("torchvision")


def load_official_model(variant: str) -> torch.nn.Module | None:
    """`create_efficientvit_sam_model("efficientvit-sam-<variant>", pretrained=False)`, eval.

    Returns None (with a note on stderr) when the official tree or its imports are missing.
    """
    tree = official_tree()
    if tree is None:
        print(f"note: official tree not found (set {TREE_ENV}); skipping it", file=sys.stderr)
        return None
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    try:
        _import_torchvision()
        zoo = importlib.import_module("efficientvit.sam_model_zoo")
    except ImportError as exc:
        print(f"note: official implementation not importable here: {exc}", file=sys.stderr)
        return None
    model: torch.nn.Module = zoo.create_efficientvit_sam_model(
        f"efficientvit-sam-{variant}", pretrained=False
    )
    return model.eval()


def make_inputs(
    seed: int, batch: int, image_size: int, n_boxes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic benchmark inputs (same bits in every process with the same torch).

    Returns:
        images (batch, 3, S, S) float32 normalized encoder input, embedding (1, 256, 64, 64)
        float32, boxes (n_boxes, 4) float32 xyxy in the 1024 prompt frame.
    """
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, image_size, image_size, generator=gen)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    corners = torch.rand(n_boxes, 2, 2, generator=gen) * PROMPT_FRAME
    boxes = torch.cat([corners.amin(dim=1), corners.amax(dim=1)], dim=1)
    return images, embedding, boxes


def fingerprint(*tensors: torch.Tensor) -> str:
    """Short sha256 of the tensors' bytes, to show both implementations got the same inputs."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall seconds of `fn()` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), or the peak where absent."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _RssSampler:
    """Samples this process's RSS every millisecond in a thread; `peak_mb` is the maximum."""

    def __init__(self) -> None:
        self.peak_mb = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak_mb = max(self.peak_mb, _rss_mb())

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())


def measure(
    fn: Callable[[], object], device: torch.device, warmup: int, repeats: int
) -> dict[str, float]:
    """Time `fn` and report the peak memory it adds while it runs.

    CUDA: `torch.cuda.max_memory_allocated` above what was allocated before. CPU: the peak
    resident set size sampled during the calls above the resident size before them. Beside the
    median wall `seconds`: `cpu_seconds`, this process's CPU time (all threads) per call over
    the warm-up and timed calls, and `load_1m`, the 1-minute load average after them.
    """
    cpu_start = time.process_time()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        seconds = time_call(fn, device, warmup, repeats)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        base_mb = _rss_mb()
        with _RssSampler() as sampler:
            seconds = time_call(fn, device, warmup, repeats)
        peak = max(0.0, sampler.peak_mb - base_mb)
    cpu_seconds = (time.process_time() - cpu_start) / max(1, warmup + repeats)
    load_1m = os.getloadavg()[0]
    return {"seconds": seconds, "peak_mb": peak, "cpu_seconds": cpu_seconds, "load_1m": load_1m}


def _official_decoder(model: Any, embedding: torch.Tensor, boxes: torch.Tensor) -> object:
    """Prompt encoder + mask decoder on boxes, as the official predictor's predict_torch."""
    sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
    return model.mask_decoder(
        image_embeddings=embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )


def run_official(args: argparse.Namespace) -> dict[str, Any]:
    """Time the official image encoder and decoder; the JSON result of the script."""
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_official_model(args.variant)
    if loaded is None:
        return {"available": False}
    model: Any = loaded
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    model = model.to(device)
    model.image_encoder.to(dtype=dtype)
    size = int(model.image_size[1])
    images, embedding, boxes = make_inputs(
        args.seed, max(args.batch_sizes), size, max(args.box_counts)
    )
    result: dict[str, Any] = {"available": True, "encoder": {}, "decoder": {}, "image_size": size}
    result["inputs"] = fingerprint(images, embedding, boxes)
    embedding = embedding.to(device)
    with torch.inference_mode():
        for batch in sorted(args.batch_sizes):
            x = images[:batch].to(device=device, dtype=dtype)
            result["encoder"][str(batch)] = measure(
                partial(model.image_encoder, x), device, args.warmup, args.repeats
            )
        for count in sorted(args.box_counts):
            b = boxes[:count].to(device)
            result["decoder"][str(count)] = measure(
                partial(_official_decoder, model, embedding, b),
                device,
                args.warmup,
                args.repeats,
            )
    return result


def worker_arguments(
    parser: argparse.ArgumentParser, *, variant_required: bool = True
) -> argparse.ArgumentParser:
    """Options shared by both timing workers."""
    parser.add_argument("--variant", required=variant_required, help="l0, l1, l2, xl0 or xl1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1])
    parser.add_argument("--box-counts", type=int, nargs="+", default=[1])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    return parser


if __name__ == "__main__":
    cli = worker_arguments(argparse.ArgumentParser(description=__doc__))
    print(json.dumps(run_official(cli.parse_args())))
