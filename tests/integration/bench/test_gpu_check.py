"""`bench/gpu_check.sh --cpu`: the GPU machine's prepared check, at small sizes on the CPU.

The full run fills every section of gpu_check.json with real numbers (minutes on 2 cores, so
`slow`); the planted-failure run checks that a failing step is recorded, the later steps still
run, and the script exits non-zero (seconds: the heavy steps fail at once).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
STEPS = [
    "environment",
    "tests",
    "encoder_fp32",
    "detector",
    "pipeline",
    "encoder_fp32_compiled",
]


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTOLABEL_", "PREFECT_API", "GPU_CHECK_"))
    }
    out = tmp_path / "out"
    done = subprocess.run(
        [str(SCRIPT), "--cpu", str(out)],
        env=clean | {"TMPDIR": str(tmp_path)} | env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    return done, out


def load(out: Path, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    assert (out / "gpu_check.json").is_file(), done.stdout[-3000:] + done.stderr[-3000:] + log
    report: dict[str, Any] = json.loads((out / "gpu_check.json").read_text())
    return report


@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_cpu_check_fills_every_section_with_numbers(tmp_path: Path) -> None:
    # The default backend choice (auto) exports and times every runtime of both models first:
    # minutes on 2 CPU cores. The script passes these flags through GPU_CHECK_LABEL_FLAGS.
    flags = "--segmenter-backend torch --detector-backend torch"
    done, out = run_check(tmp_path, GPU_CHECK_BUDGET_S="1200", GPU_CHECK_LABEL_FLAGS=flags)
    report = load(out, done)
    log = (out / "gpu_check.log").read_text()
    assert done.returncode == 0, done.stdout[-3000:] + log[-5000:]
    assert report["ok"]
    assert report["failed_steps"] == []
    assert report["missing"] == []
    assert list(report["steps"]) == STEPS
    assert all(step["ok"] and step["seconds"] > 0 for step in report["steps"].values())
    assert report["tests"]["tests"] > 0
    assert report["tests"]["failures"] == 0
    encoder = report["encoder"]
    assert {(r["compiled"], r["batch"]) for r in encoder} == {(False, 1), (False, 2), (True, 1)}
    assert all(r["variant"] == "l0" and r["images_per_s"] > 0 for r in encoder)
    assert report["decoder"]
    assert all(r["boxes_per_s"] > 0 for r in report["decoder"])
    detector = report["detector"]
    assert detector["image_hw"] == [320, 480]
    assert {r["batch"] for r in detector["rows"]} == {1, 2}
    assert all(r["images_per_s"] > 0 for r in detector["rows"])
    pipeline = report["pipeline"]
    assert pipeline["returncode"] == 0
    assert pipeline["status"] == "completed"
    assert pipeline["images_done"] == pipeline["images"] == 2
    assert pipeline["images_per_s"] > 0
    assert pipeline["run_images_per_s"] > 0
    assert pipeline["detector_only_images_per_s"] > 0
    assert pipeline["pipeline_over_detector"] > 0
    table = (out / "gpu_check.txt").read_text()
    assert report["label_flags"] == flags
    assert table.startswith("gpu_check (cpu)")
    assert "pipeline / detector-only" in table
    assert sorted(p.name for p in out.iterdir()) == [
        "gpu_check.json",
        "gpu_check.log",
        "gpu_check.txt",
    ]


@pytest.mark.timeout(600)
def test_a_failing_step_is_recorded_and_the_next_steps_still_run(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$*" in *model_throughput.py*|*detector_throughput.py*|*"label --source"*)\n'
        '  echo "planted failure" >&2; exit 3;;\n'
        "esac\n"
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    done, out = run_check(tmp_path, GPU_CHECK_PYTHON=str(python))
    report = load(out, done)
    assert done.returncode == 1
    assert list(report["steps"]) == STEPS
    assert report["steps"]["environment"]["ok"]
    assert report["steps"]["tests"]["ok"]
    assert report["failed_steps"] == STEPS[2:]
    assert all(report["steps"][name]["returncode"] == 3 for name in STEPS[2:])
    assert report["pipeline"]["returncode"] == 3
    assert not report["ok"]
    assert set(report["missing"]) >= {"encoder", "detector", "pipeline"}
    assert "planted failure" in (out / "gpu_check.log").read_text()
