"""EfficientViT-SAM throughput: image encoder (images/s), decoder (boxes/s), peak memory.

For each variant, our model runs in a worker subprocess: the fastest torch inference option
(`autolabel.models.prepare_for_inference`) whose embeddings stay within parity tolerance of
the plain model and, on the CPU, the ONNX Runtime and OpenVINO backends of the exported model
that pass the parity gate (`bench/_runtime_backends.py`). When the official implementation is
available (see bench/README.md) it runs in its own Python on the same inputs, and the table
shows our best backend and our torch path against it.

    .venv/bin/python bench/model_throughput.py --quick --json /tmp/throughput.json
    .venv/bin/python bench/model_throughput.py --variants l0 xl0 --batch-sizes 1 8 32
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from _official_reference import (
    DTYPES,
    TREE_ENV,
    fingerprint,
    make_inputs,
    measure,
    official_tree,
    time_call,
    worker_arguments,
)
from _runtime_backends import RUNTIMES, gated_runtimes, time_backend
from _throughput_report import merge_best, print_table, rows_for

BENCH = Path(__file__).resolve().parent
PYTHON_ENV = "AUTOLABEL_OFFICIAL_PYTHON"
DEFAULT_PYTHON = BENCH.parents[1] / "ref-venv" / "bin" / "python"
VARIANTS = ("l0", "l1", "l2", "xl0", "xl1")
# Embedding tolerance for an inference option to count as parity-preserving, per dtype.
PARITY_TOL = {"fp32": (1e-3, 1e-4), "bf16": (5e-2, 5e-2), "fp16": (1e-2, 1e-2)}
OPTIONS: dict[str, dict[str, Any]] = {
    "eager": {"fold_bn": False, "channels_last": False},
    "fold_bn": {"fold_bn": True, "channels_last": False},
    "fold_bn+channels_last": {"fold_bn": True, "channels_last": True},
}
COMPILED: dict[str, dict[str, Any]] = {
    "fold_bn+channels_last+compile": {
        "fold_bn": True,
        "channels_last": True,
        "compile_encoder": True,
    }
}


def _prepared_models(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from autolabel.models import create_model, prepare_for_inference

    torch.manual_seed(args.seed)
    base = create_model(f"efficientvit-sam-{args.variant}", family="segmenter")
    options = OPTIONS | (COMPILED if args.compile else {})
    if args.torch_options:
        options = {name: (OPTIONS | COMPILED)[name] for name in args.torch_options}
    prepared = {
        name: prepare_for_inference(base, device=args.device, dtype=args.dtype, **kwargs)
        for name, kwargs in options.items()
    }
    return base, prepared


def _encoder_input(model: Any, x: torch.Tensor) -> torch.Tensor:
    """`x` on the encoder's device, in its dtype and memory format (as `encode_images`)."""
    weight = next(model.image_encoder.parameters())
    x = x.to(device=weight.device, dtype=weight.dtype)
    if weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _encode(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Image-encoder forward on an input already made by `_encoder_input`."""
    out: torch.Tensor = model.image_encoder(x)
    return out


def _choose_option(
    args: argparse.Namespace, base: Any, prepared: dict[str, Any], x: torch.Tensor
) -> tuple[str, list[dict[str, Any]]]:
    """The fastest option at batch 1 whose embedding is allclose to the plain fp32 model's.

    In bf16/fp16 on random weights even the plain model may miss the tolerance; then options
    whose error is at most 1.5x the plain model's count as parity-preserving.
    """
    device = torch.device(args.device)
    reference = base.to(device).image_encoder(x.to(device)).float()
    rtol, atol = PARITY_TOL[args.dtype]
    report: list[dict[str, Any]] = []
    for name, model in prepared.items():
        xin = _encoder_input(model, x)
        out = _encode(model, xin).float()  # also the warm-up (and compiling) call
        seconds = time_call(partial(_encode, model, xin), device, 0, args.repeats)
        report.append(
            {
                "option": name,
                "seconds_batch1": seconds,
                "max_abs_diff": float((out - reference).abs().max()),
                "within_tolerance": bool(torch.allclose(out, reference, rtol=rtol, atol=atol)),
            }
        )
    passing = [r for r in report if r["within_tolerance"]]
    if not passing:  # low precision on random weights: no worse than the plain model's error
        limit = 1.5 * report[0]["max_abs_diff"] + 1e-6
        passing = [r for r in report if r["max_abs_diff"] <= limit] or report[:1]
    best: str = min(passing, key=lambda r: float(r["seconds_batch1"]))["option"]
    return best, report


def _runtime_names(args: argparse.Namespace) -> list[str]:
    """The runtimes to try: `--runtimes`, where `auto` is all of them on a float32 CPU run."""
    if "none" in args.runtimes:
        return []
    if "auto" in args.runtimes:
        return list(RUNTIMES) if args.device == "cpu" and args.dtype == "fp32" else []
    return [name for name in RUNTIMES if name in args.runtimes]


@torch.inference_mode()
def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Worker: time our torch path (chosen option) and every parity-passing runtime."""
    from autolabel.models import ImageEmbedding, decode_prompts

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    base, prepared = _prepared_models(args)
    size = int(base.encoder_input_size)
    images, embedding, boxes = make_inputs(
        args.seed, max(args.batch_sizes), size, max(args.box_counts)
    )
    result: dict[str, Any] = {"image_size": size, "threads": torch.get_num_threads()}
    result["inputs"] = fingerprint(images, embedding, boxes)
    result["option"], result["options"] = _choose_option(args, base, prepared, images[:1])
    model = prepared[result["option"]]
    del prepared
    xin = _encoder_input(model, images)
    result["encoder"] = {
        str(b): measure(partial(_encode, model, xin[:b]), device, args.warmup, args.repeats)
        for b in sorted(args.batch_sizes)
    }
    emb = ImageEmbedding(
        embedding=embedding.to(device), original_size=(1024, 1024), prompt_size=(1024, 1024)
    )
    result["decoder"] = {
        str(n): measure(
            partial(decode_prompts, model, emb, boxes=boxes[:n].to(device), multimask_output=False),
            device,
            args.warmup,
            args.repeats,
        )
        for n in sorted(args.box_counts)
    }
    del model, xin
    folder = Path(args.export_dir or tempfile.mkdtemp(prefix="sam-onnx-"))
    threads = args.threads or None
    runtimes, result["parity"] = gated_runtimes(base.cpu(), _runtime_names(args), folder, threads)
    sizes = (sorted(args.batch_sizes), sorted(args.box_counts))
    result["runtimes"] = {
        name: time_backend(backend, images, embedding, boxes, sizes, (args.warmup, args.repeats))
        for name, backend in runtimes.items()
    }
    return result


def _worker_flags(args: argparse.Namespace, variant: str) -> list[str]:
    flags = ["--variant", variant, "--device", args.device, "--dtype", args.dtype]
    flags += ["--batch-sizes", *map(str, args.batch_sizes)]
    flags += ["--box-counts", *map(str, args.box_counts)]
    flags += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    return [*flags, "--seed", str(args.seed), "--threads", str(args.threads)]


def _our_flags(args: argparse.Namespace, export_dir: str) -> list[str]:
    flags = ["--worker", "--export-dir", export_dir, "--runtimes", *args.runtimes]
    flags += ["--compile"] if args.compile else []
    return flags + (["--torch-options", *args.torch_options] if args.torch_options else [])


def _run_json(command: list[str], processes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Run a worker; its last stdout line is JSON. None (with a note) when it fails.

    Appends the worker's wall seconds, CPU seconds (user + system, from getrusage of the
    children) and the 1-minute load average before and after it to `processes`.
    """
    load_before, start = os.getloadavg()[0], time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    processes.append(
        {
            "worker": Path(command[1]).name,
            "wall_seconds": time.perf_counter() - start,
            "cpu_seconds": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
            "load_1m_before": load_before,
            "load_1m_after": os.getloadavg()[0],
            "returncode": done.returncode,
        }
    )
    if done.returncode != 0 or not done.stdout.strip():
        print(f"note: worker failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _alternate_rounds(
    args: argparse.Namespace, variant: str, official_python: str | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
    """Run ours and the official worker alternately `--rounds` times; keep each one's best."""
    flags = _worker_flags(args, variant)
    ours: dict[str, Any] | None = None
    official: dict[str, Any] | None = None
    processes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f"sam-{variant}-") as export_dir:
        for _ in range(args.rounds):
            command = [sys.executable, __file__, *flags, *_our_flags(args, export_dir)]
            ours = merge_best(ours, _run_json(command, processes))
            if official_python is not None:
                script = str(BENCH / "_official_reference.py")
                result = _run_json([official_python, script, *flags], processes)
                if result is not None and not result.get("available", False):
                    print(f"note: official model not loadable for {variant}; reporting ours only")
                    result = None
                official = merge_best(official, result)
    return ours, official, processes


def _official_python(args: argparse.Namespace) -> str | None:
    if args.no_official:
        return None
    python = args.official_python or os.environ.get(PYTHON_ENV) or str(DEFAULT_PYTHON)
    if official_tree() is None:
        print(f"note: official tree not found (set {TREE_ENV}); reporting ours only")
        return None
    if not Path(python).is_file():
        print(f"note: no Python for the official model at {python} (set {PYTHON_ENV})")
        return None
    return python


def _print_parity(variant: str, ours: dict[str, Any]) -> None:
    chosen = next(o for o in ours["options"] if o["option"] == ours["option"])
    print(
        f"{variant}: torch option {ours['option']} (max abs diff {chosen['max_abs_diff']:.2e} "
        f"against the plain fp32 model)"
    )
    for record in ours.get("parity", []):
        print(f"{variant}: {record['line']}")


def main(args: argparse.Namespace) -> None:
    official_python = _official_python(args)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    load_start, cpu_start = os.getloadavg(), time.process_time()
    for variant in args.variants:
        ours, official, processes = _alternate_rounds(args, variant, official_python)
        if ours is None:
            continue
        if official is not None and official.get("inputs") != ours["inputs"]:
            print(f"note: {variant}: official inputs differ from ours; ratio not shown")
            official = None
        _print_parity(variant, ours)
        details[variant] = {"ours": ours, "official": official, "processes": processes}
        rows.extend(rows_for(variant, ours, official))
    print_table(rows)
    load_end = os.getloadavg()
    print(f"load average (1, 5, 15 min): start {load_start}, end {load_end}")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        payload: dict[str, Any] = {"settings": settings, "torch": torch.__version__}
        payload["rows"] = rows
        payload["load_average"] = {"start": list(load_start), "end": list(load_end)}
        payload["parent_cpu_seconds"] = time.process_time() - cpu_start
        payload["cpu_count"] = os.cpu_count()
        Path(args.json).write_text(json.dumps(payload | {"details": details}, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = worker_arguments(argparse.ArgumentParser(description=__doc__), variant_required=False)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--export-dir", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="about a minute: L0, small batches")
    parser.add_argument("--json", help="write the results to this path")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--compile", action="store_true", help="also try torch.compile")
    parser.add_argument(
        "--torch-options",
        nargs="+",
        choices=sorted(OPTIONS | COMPILED),
        help="only these torch options (default: all; compiled ones with --compile)",
    )
    parser.add_argument(
        "--runtimes",
        nargs="+",
        choices=["auto", "none", *RUNTIMES],
        default=["auto"],
        help="runtime backends to gate and time (auto: all on a float32 CPU run, else none)",
    )
    parser.add_argument("--official-python", help=f"Python for the official model ({PYTHON_ENV})")
    parser.add_argument("--no-official", action="store_true", help="skip the official model")
    parser.add_argument("--rounds", type=int, default=2, help="alternate ours/official runs")
    parser.set_defaults(batch_sizes=[1, 8, 32], box_counts=[1, 8, 32, 64])
    args: argparse.Namespace = parser.parse_args(argv)
    if args.quick:
        args.variants, args.batch_sizes, args.box_counts = ["l0"], [1, 2], [1, 16]
        args.warmup, args.repeats, args.rounds = 1, 2, 1
    if args.dtype not in DTYPES:
        parser.error(f"--dtype must be one of {sorted(DTYPES)}")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        print(json.dumps(run_ours(arguments)))
    else:
        main(arguments)
