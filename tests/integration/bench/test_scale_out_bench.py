"""`bench/scale_out.py`: its arguments and arithmetic (seconds), and one tiny real run on a
Prefect server with 1 and 2 workers (minutes on 2 cores, so `slow`)."""

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "bench" / "scale_out.py"


@pytest.fixture(scope="module")
def scale_out() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("scale_out")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_help_names_the_options() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for option in ("--workers", "--quick", "--json", "--device-ms", "--images-per-shard-run"):
        assert option in done.stdout


def test_quick_and_bounds(scale_out: ModuleType) -> None:
    quick = scale_out.parse_args(["--quick"])
    assert (quick.workers, quick.images_per_shard_run, quick.device_ms) == ([1, 4], 200, 100.0)
    full = scale_out.parse_args([])
    assert full.workers == [1, 2, 4]
    assert full.images_per_shard_run * full.device_ms / 1000 >= 120  # seconds per shard run
    assert scale_out.parse_args(["--workers", "4", "1", "4"]).workers == [1, 4]
    for bad in (["--workers", "0"], ["--images-per-shard-run", "10001"], ["--shard-runs", "0"]):
        with pytest.raises(SystemExit):
            scale_out.parse_args(bad)


def test_speedup_and_efficiency_against_the_fewest_workers(scale_out: ModuleType) -> None:
    ratios = scale_out.scaling({1: 400.0, 2: 210.0, 4: 125.0})
    assert ratios[1] == {"speedup": 1.0, "efficiency": 1.0}
    assert ratios[2]["speedup"] == pytest.approx(400 / 210)
    assert ratios[2]["efficiency"] == pytest.approx(400 / 420)
    assert ratios[4] == {"speedup": pytest.approx(3.2), "efficiency": pytest.approx(0.8)}
    # Without a 1-worker row: against 2 workers, assumed linear there.
    assert scale_out.scaling({2: 100.0, 4: 60.0})[4]["efficiency"] == pytest.approx(200 / 240)


def test_startup_share_projection(scale_out: ModuleType) -> None:
    # 12 s start-up before 4096 images of 100 ms: 12 / (12 + 409.6).
    assert scale_out.projected_startup_fraction(12.0, 0.1) == pytest.approx(12 / 421.6)
    assert scale_out.projected_startup_fraction(10.0, 0.01, images=1000) == pytest.approx(0.5)
    assert scale_out.projected_startup_fraction(0.0, 0.1) == 0.0


def test_peak_concurrency(scale_out: ModuleType) -> None:
    assert scale_out.peak_concurrency([]) == 0
    assert scale_out.peak_concurrency([(0, 10), (5, 15), (10, 20)]) == 2  # 10: one ends first
    assert scale_out.peak_concurrency([(0, 30), (1, 2), (3, 4), (1.5, 3.5)]) == 3


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_tiny_run_on_one_and_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "scale_out.json"
    argv = [sys.executable, str(SCRIPT), "--workers", "1", "2", "--shard-runs", "2"]
    argv += ["--images-per-shard-run", "6", "--device-ms", "20", "--batch-size", "2"]
    argv += ["--image-size", "64", "48", "--json", str(out), "--logs", str(tmp_path / "logs")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["workers"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["exit_code"] == 0
        assert (row["run_status"], row["images_done"]) == ("completed", 12)
        assert row["attempts_completed"] == 2
        assert row["attempt_numbers"] == [1, 1]  # no shard run was lost or rerun
        assert all(0 < s < w for s, w in zip(row["startup_s"], row["shard_wall_s"], strict=True))
        assert row["cpu_s"] > 0
    assert report["rows"][0]["peak_concurrent_attempts"] == 1
    assert "efficiency" in done.stdout
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        left = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'scale_out_%'")
        assert left.fetchall() == []
