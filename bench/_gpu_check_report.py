"""Helpers of `bench/gpu_check.sh`: synthetic images, and the JSON and table of the check.

    python bench/_gpu_check_report.py images DIR N WIDTH HEIGHT
    python bench/_gpu_check_report.py summary --work WORK --out OUT --mode gpu|cpu ...

`summary` reads what the steps left in WORK (steps.tsv, tests.xml, encoder_*.json,
detector.json, pipeline_wall.json, home/autolabel.db) and writes OUT/gpu_check.json and
OUT/gpu_check.txt (the printed table). It exits 1 when any step failed or any section lacks
numbers, so the script's exit code says whether everything ran.
"""

import argparse
import json
import os
import platform
import sqlite3
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageDraw

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGES = 8


def write_images(folder: Path, count: int, width: int, height: int) -> None:
    """`count` JPEGs of WIDTHxHEIGHT: a few photo-like bases, each copy with its own shapes."""
    sys.path.insert(0, str(ROOT))
    from tests.corpus import photo_like

    rng = np.random.default_rng(0)
    bases = [photo_like(rng, width, height) for _ in range(min(count, BASE_IMAGES))]
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = bases[index % len(bases)].copy()
        draw = ImageDraw.Draw(image)
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.rectangle((x0, y0, x0 + 40, y0 + 40), fill=colour)
        image.save(folder / f"img_{index:05d}.jpg", "JPEG", quality=90)


def _steps(work: Path) -> dict[str, dict[str, Any]]:
    steps = {}
    lines = (work / "steps.tsv").read_text().splitlines()[1:]
    for name, code, seconds, limit in (line.split("\t") for line in lines):
        steps[name] = {
            "ok": code == "0",
            "returncode": int(code),
            "seconds": float(seconds),
            "timeout_s": int(limit),
            "timed_out": code in ("124", "137"),
        }
    return steps


def _tests(work: Path) -> dict[str, int] | None:
    path = work / "tests.xml"
    if not path.is_file():
        return None
    suites = ET.parse(path).getroot()  # noqa: S314 - pytest's own file
    suite = suites if suites.tag == "testsuite" else suites[0]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def _encoder(work: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Encoder rows (images/s) and decoder rows (boxes/s) of every encoder_*.json."""
    encoder, decoder = [], []
    for path in sorted(work.glob("encoder_*.json")):
        data = json.loads(path.read_text())
        tag = path.stem.removeprefix("encoder_")
        for row in data["rows"]:
            common = {"variant": row["variant"], "dtype": data["settings"]["dtype"]}
            common |= {"compiled": tag.endswith("_compiled"), "backend": row["best_backend"]}
            if row["stage"] == "encoder":
                encoder.append(common | {"batch": row["batch"], "images_per_s": row["best_per_s"]})
            else:
                decoder.append(common | {"boxes": row["batch"], "boxes_per_s": row["best_per_s"]})
    return encoder, decoder


def _detector(work: Path) -> dict[str, Any] | None:
    path = work / "detector.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"image_hw": data["settings"]["hw"], "rows": data["rows"]}


def _run_record(db: Path) -> dict[str, Any]:
    """The label run's own counts and images/s (started_at to finished_at) from the SQLite DB."""
    if not db.is_file():
        return {}
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT status, images_done, images_failed, started_at, finished_at "
            "FROM label_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return {}
    status, done, failed, started, finished = row
    record: dict[str, Any] = {"status": status, "images_done": done, "images_failed": failed}
    if started and finished:
        seconds = (
            datetime.fromisoformat(finished) - datetime.fromisoformat(started)
        ).total_seconds()
        record["run_seconds"] = seconds
        record["run_images_per_s"] = done / seconds if seconds > 0 else None
    return record


def _pipeline(
    work: Path, detector: dict[str, Any] | None, label_batch: int
) -> dict[str, Any] | None:
    path = work / "pipeline_wall.json"
    if not path.is_file():
        return None
    wall: dict[str, Any] = json.loads(path.read_text())
    result = wall | _run_record(work / "home" / "autolabel.db")
    result["images_per_s"] = wall["images"] / wall["wall_seconds"]
    rows = [r for r in (detector or {}).get("rows", []) if r["dtype"] == "float32"]
    if rows:  # the labeling default: torch float32, at the label batch size or the largest
        row = min(rows, key=lambda r: (r["batch"] != label_batch, -r["batch"]))
        result["detector_only_images_per_s"] = row["images_per_s"]
        result["detector_only_row"] = row | {"image_hw": detector["image_hw"]}  # type: ignore[index]
        result["pipeline_over_detector"] = result["images_per_s"] / row["images_per_s"]
    return result


def _host() -> dict[str, Any]:
    import torch

    host: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    host |= {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())}
    if torch.cuda.is_available():
        host["gpu"] = torch.cuda.get_device_name()
    return host


def _has_numbers(report: dict[str, Any]) -> list[str]:
    """Names of the sections that lack positive numbers."""
    missing = []
    if not report["tests"] or report["tests"]["tests"] <= 0:
        missing.append("tests")
    for section, key in (("encoder", "images_per_s"), ("decoder", "boxes_per_s")):
        if not report[section] or not all(r[key] > 0 for r in report[section]):
            missing.append(section)
    if not report["detector"] or not all(r["images_per_s"] > 0 for r in report["detector"]["rows"]):
        missing.append("detector")
    pipeline = report["pipeline"] or {}
    if not pipeline.get("images_per_s", 0) > 0 or not pipeline.get("pipeline_over_detector"):
        missing.append("pipeline")
    return missing


def _cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>9}"
    return f"{value:9.3f}" if value < 10 else f"{value:9.1f}"


def _grid(rows: list[dict[str, Any]], keys: tuple[str, ...], size: str, value: str) -> list[str]:
    """One line per `keys` group with `value` per `size` column."""
    sizes = sorted({r[size] for r in rows})
    groups: dict[tuple[Any, ...], dict[int, float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), {})[r[size]] = r[value]
    prefix = "n" if size == "boxes" else "b"
    lines = [f"{' '.join(keys):24}" + "".join(f"{prefix + str(s):>9}" for s in sizes)]
    for group, values in groups.items():
        label = " ".join("compiled" if v is True else "" if v is False else str(v) for v in group)
        cells = "".join(_cell(values.get(s)) for s in sizes)
        lines.append(f"{label:24}{cells}")
    return lines


def table(report: dict[str, Any]) -> str:
    host = report["host"]
    load = "/".join(f"{x:.1f}" for x in host["load_average"])
    lines = [
        f"gpu_check ({report['mode']}): {host.get('gpu', 'no GPU')}, torch {host['torch']}, "
        f"python {host['python']}, {host['cpu_count']} CPUs, load {load}, "
        f"{report['total_seconds']} s",
        "steps: "
        + " | ".join(
            f"{n} {'ok' if s['ok'] else 'FAILED rc ' + str(s['returncode'])} {s['seconds']:.0f} s"
            for n, s in report["steps"].items()
        ),
    ]
    if report["tests"]:
        t = report["tests"]
        lines.append(
            f"tests (-m gpu): {t['passed']} passed, {t['failures']} failed, "
            f"{t['errors']} errors, {t['skipped']} skipped"
        )
    if report["encoder"]:
        lines += [
            "",
            "encoder images/s",
            *_grid(report["encoder"], ENC_KEYS, "batch", "images_per_s"),
        ]
    if report["decoder"]:
        lines += [
            "",
            "decoder boxes/s",
            *_grid(report["decoder"], ENC_KEYS, "boxes", "boxes_per_s"),
        ]
    if report["detector"]:
        hw = "x".join(map(str, report["detector"]["image_hw"]))
        rows = report["detector"]["rows"]
        lines += ["", f"detector images/s at {hw}", *_grid(rows, DET_KEYS, "batch", "images_per_s")]
    p = report["pipeline"]
    if p:
        line = f"pipeline: {p['images']} images in {p['wall_seconds']:.1f} s wall = "
        line += f"{p['images_per_s']:.2f} images/s"
        if p.get("run_images_per_s"):
            line += f" (run record: {p['run_images_per_s']:.2f} images/s, {p['status']})"
        if "detector_only_images_per_s" in p:
            row = p["detector_only_row"]
            line += f"; detector-only {row['dtype']} batch {row['batch']} at "
            line += f"{'x'.join(map(str, row['image_hw']))}: {p['detector_only_images_per_s']:.2f}"
            line += f" images/s; pipeline / detector-only {p['pipeline_over_detector']:.2f}"
        lines += ["", line]
    if report["missing"]:
        lines.append(f"sections without numbers: {', '.join(report['missing'])}")
    return "\n".join(lines)


ENC_KEYS = ("variant", "dtype", "compiled")
DET_KEYS = ("backend", "dtype")


def summary(args: argparse.Namespace) -> int:
    work, out = Path(args.work), Path(args.out)
    encoder, decoder = _encoder(work)
    detector = _detector(work)
    report: dict[str, Any] = {"mode": args.mode, "total_seconds": args.total_seconds}
    report |= {"host": _host(), "steps": _steps(work), "tests": _tests(work)}
    report |= {"encoder": encoder, "decoder": decoder, "detector": detector}
    report["pipeline"] = _pipeline(work, detector, args.label_batch)
    report["label_flags"] = os.environ.get("GPU_CHECK_LABEL_FLAGS", "")
    report["missing"] = _has_numbers(report)
    failed = [name for name, s in report["steps"].items() if not s["ok"]]
    report["failed_steps"] = failed
    report["ok"] = not failed and not report["missing"]
    text = table(report)
    print(text)
    (out / "gpu_check.txt").write_text(text + "\n")
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    images = commands.add_parser("images")
    images.add_argument("folder", type=Path)
    images.add_argument("count", type=int)
    images.add_argument("width", type=int)
    images.add_argument("height", type=int)
    report = commands.add_parser("summary")
    report.add_argument("--work", required=True)
    report.add_argument("--out", required=True)
    report.add_argument("--mode", choices=["gpu", "cpu"], required=True)
    report.add_argument("--label-batch", type=int, required=True)
    report.add_argument("--total-seconds", type=int, required=True)
    args = parser.parse_args()
    if args.command == "images":
        write_images(args.folder, args.count, args.width, args.height)
        return 0
    return summary(args)


if __name__ == "__main__":
    sys.exit(main())
