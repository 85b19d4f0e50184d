"""GroundingDINO detector throughput: images/s per backend, precision and batch size.

The real SwinT-OGC architecture with random weights (speed does not depend on their values) runs
its image side on one shape bucket with a fixed 9-token caption whose text features are computed
once (as the detector caches them). Backends: transformers/torch in float32 and autocast
bfloat16/float16, and the ONNX export in ONNX Runtime (CPU provider, or CUDA when onnxruntime-gpu
is installed), and OpenVINO in float32 and bfloat16 on the CPU: one export serves every batch
size and caption length.

    .venv/bin/python bench/detector_throughput.py --quick --json /tmp/detector.json
    .venv/bin/python bench/detector_throughput.py --device cuda --dtype float32 float16 \
        --batch-sizes 1 4 8
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolabel.models.grounding_dino.forward import image_forward
from autolabel.models.grounding_dino.text import TextFeatures, encode_text
from autolabel.models.registry import create_model

# "[CLS] person . forklift . pallet . [SEP]" in bert-base-uncased ids.
CAPTION_IDS = [101, 2711, 1012, 9292, 18412, 1012, 14412, 1012, 102]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small image, few repeats (~1 min)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if present)")
    parser.add_argument(
        "--dtype", nargs="+", choices=["float32", "bfloat16", "float16"], default=None
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    parser.add_argument("--image-hw", nargs=2, type=int, default=None, help="resized H W bucket")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime backend")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT CPU threads")
    return parser.parse_args()


def time_call(call: Callable[[], object], warmup: int, repeats: int, cuda: bool) -> float:
    """Median seconds of `call` after `warmup` calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_call(
    model: Any, pixels: torch.Tensor, text: TextFeatures, dtype: str
) -> Callable[[], object]:
    autocast = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)

    def call() -> object:
        with torch.inference_mode():
            if autocast is None:
                return image_forward(model, pixels, text)
            with torch.autocast(pixels.device.type, dtype=autocast):
                return image_forward(model, pixels, text)

    return call


def exported_rows(model: Any, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One export of the bucket (any batch size), run in ONNX Runtime and OpenVINO."""
    from autolabel.models.grounding_dino.onnx_export import export_onnx
    from autolabel.models.grounding_dino.runtime import ExportedImageSide, TorchImageSide
    from autolabel.models.runtime.sessions import openvino_runner, ort_runner

    cpu_model = model.to("cpu")
    cpu_text = encode_text(cpu_model, torch.tensor([CAPTION_IDS]))
    threads = torch.get_num_threads()
    runtimes: dict[str, tuple[str, Any]] = {
        "onnxruntime": ("float32", partial(ort_runner, threads=threads))
    }
    if settings["device"] == "cpu" and _installed("openvino"):
        runtimes["openvino"] = ("float32", partial(openvino_runner, threads=threads))
        runtimes["openvino-bf16"] = (
            "bfloat16",
            partial(openvino_runner, precision="bf16", threads=threads),
        )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gdino.onnx"
        start = time.perf_counter()
        export_onnx(cpu_model, path, text=cpu_text, image_hw=settings["hw"])
        export_s = time.perf_counter() - start
        for backend, (dtype, compile_graph) in runtimes.items():
            side = ExportedImageSide(
                lambda _hw: path, compile_graph, name=backend, fallback=TorchImageSide(cpu_model)
            )
            for batch in settings["onnx_batch_sizes"]:
                rng = np.random.default_rng(0)
                pixels = torch.from_numpy(
                    rng.standard_normal((batch, 3, *settings["hw"])).astype(np.float32)
                )
                seconds = time_call(partial(side, pixels, cpu_text), 1, settings["repeats"], False)
                rows.append(
                    row(backend.split("-")[0], "cpu", dtype, batch, seconds)
                    | {"export_s": round(export_s, 1)}
                )
                print(f"{format_row(rows[-1])}  (export {export_s:.0f} s, once)", flush=True)
    return rows


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def row(backend: str, device: str, dtype: str, batch: int, seconds: float) -> dict[str, Any]:
    return {
        "backend": backend,
        "device": device,
        "dtype": dtype,
        "batch": batch,
        "s_per_batch": round(seconds, 4),
        "images_per_s": round(batch / seconds, 3),
    }


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['backend']:<12} {r['device']:<22} {r['dtype']:<9} {r['batch']:>5} "
        f"{r['s_per_batch']:>11.3f} {r['images_per_s']:>9.2f}"
    )


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    device = "cuda" if cuda else "cpu"
    dtypes = args.dtype or (["float32", "float16", "bfloat16"] if cuda else ["float32", "bfloat16"])
    batch_sizes = args.batch_sizes or ([1, 2] if args.quick else [1, 2, 4, 8])
    return {
        "device": device,
        "dtypes": dtypes,
        "batch_sizes": batch_sizes,
        # One export serves every batch size (about 15 s on 2 CPU cores for SwinT-OGC).
        "onnx_batch_sizes": [1] if args.quick else batch_sizes,
        "hw": tuple(args.image_hw or ((320, 480) if args.quick else (800, 1333))),
        "repeats": args.repeats or (2 if args.quick else 5),
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = resolve(args)
    torch.manual_seed(0)
    model = create_model("grounding-dino-swint-ogc", device=settings["device"])
    text = encode_text(model, torch.tensor([CAPTION_IDS]))
    print(
        f"SwinT-OGC, bucket {settings['hw']}, caption {len(CAPTION_IDS)} tokens, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"{'backend':<12} {'device':<22} {'dtype':<9} {'batch':>5} {'s/batch':>11} {'images/s':>9}"
    )
    rows = []
    for dtype in settings["dtypes"]:
        for batch in settings["batch_sizes"]:
            gen = torch.Generator().manual_seed(batch)
            pixels = torch.randn((batch, 3, *settings["hw"]), generator=gen).to(settings["device"])
            call = torch_call(model, pixels, text, dtype)
            seconds = time_call(call, 1, settings["repeats"], settings["device"] == "cuda")
            name = torch.cuda.get_device_name() if settings["device"] == "cuda" else "cpu"
            rows.append(row("torch", name, dtype, batch, seconds))
            print(format_row(rows[-1]), flush=True)
    if not args.no_onnx:
        rows += exported_rows(model, settings)
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
