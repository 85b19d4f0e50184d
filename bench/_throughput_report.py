"""Rows and the printed table of `bench/model_throughput.py`.

One row per variant, stage (encoder: images/s per batch size; decoder: boxes/s per box count):
the fastest parity-passing backend of ours (torch or a runtime), our torch figure in the run's
dtype, the official figure, and the ratios best/official and torch/official.
"""

from typing import Any

STAGES = (("encoder", "images/s"), ("decoder", "boxes/s"))


def merge_best(kept: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """Merge two worker results, keeping the faster timing of every backend, stage and size."""
    if kept is None or new is None:
        return new if kept is None else kept
    runtimes = kept.setdefault("runtimes", {})
    pairs = [(kept, new)]
    for name, timings in new.get("runtimes", {}).items():
        pairs.append((runtimes.setdefault(name, timings), timings))
    for old, fresh in pairs:
        for stage, _ in STAGES:
            for size, timing in fresh.get(stage, {}).items():
                if timing["seconds"] < old[stage][size]["seconds"]:
                    old[stage][size] = timing
    return kept


def _best_backend(ours: dict[str, Any], stage: str, size: str) -> tuple[str, dict[str, Any]]:
    """(name, timing) of the fastest of our torch path and the parity-passing runtimes."""
    candidates = [(f"torch {ours['option']}", ours[stage][size])]
    candidates += [(name, t[stage][size]) for name, t in ours.get("runtimes", {}).items()]
    return min(candidates, key=lambda c: float(c[1]["seconds"]))


def rows_for(
    variant: str, ours: dict[str, Any], official: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Table rows of one variant (see the module docstring); JSON-ready."""
    rows = []
    for stage, unit in STAGES:
        for size, torch_timing in ours[stage].items():
            n = int(size)
            name, best = _best_backend(ours, stage, size)
            row: dict[str, Any] = {"variant": variant, "stage": stage, "batch": n, "unit": unit}
            row |= {"best_backend": name, "best_per_s": n / best["seconds"]}
            row |= {"best_seconds": best["seconds"], "best_peak_mb": best["peak_mb"]}
            row |= {"best_cpu_seconds": best.get("cpu_seconds"), "load_1m": best.get("load_1m")}
            row |= {"torch_option": ours["option"], "torch_per_s": n / torch_timing["seconds"]}
            row |= {"torch_cpu_seconds": torch_timing.get("cpu_seconds")}
            theirs = (official or {}).get(stage, {}).get(size)
            if theirs is not None:
                row["official_per_s"] = n / theirs["seconds"]
                row["official_peak_mb"] = theirs["peak_mb"]
                row["official_cpu_seconds"] = theirs.get("cpu_seconds")
                row["official_load_1m"] = theirs.get("load_1m")
                row["ratio"] = theirs["seconds"] / best["seconds"]
                row["torch_ratio"] = theirs["seconds"] / torch_timing["seconds"]
            rows.append(row)
    return rows


def _number(value: float | None, width: int, digits: int = 2) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """The table: per row, best (backend), torch, official per second, ratios, CPU s, load."""
    print(
        f"{'variant':7} {'stage':7} {'batch':>5} {'best/s':>8} {'torch/s':>8} {'offic./s':>8}"
        f" {'best/off':>8} {'torch/off':>9} {'cpu-s':>6} {'off cpu-s':>9} {'load':>5}"
        "  unit, best backend"
    )
    for r in rows:
        line = f"{r['variant']:7} {r['stage']:7} {r['batch']:5d}"
        line += f" {r['best_per_s']:8.2f} {r['torch_per_s']:8.2f}"
        line += f" {_number(r.get('official_per_s'), 8)} {_number(r.get('ratio'), 8)}"
        line += f" {_number(r.get('torch_ratio'), 9)} {_number(r['best_cpu_seconds'], 6)}"
        line += f" {_number(r.get('official_cpu_seconds'), 9)} {_number(r['load_1m'], 5)}"
        print(f"{line}  {r['unit']}, {r['best_backend']}")
    print(
        "best: fastest of our torch path and the runtimes that pass the parity gate; torch: "
        "our torch path alone; ratios > 1: ours faster; cpu-s: process CPU seconds per call "
        "(all threads); load: 1-minute load average after the best backend's measurement"
    )
