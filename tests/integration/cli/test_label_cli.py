"""`autolabel label --dry-run`: counts and estimates without writing anything."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.corpus import write_good_images
from tests.integration.cli.conftest import run_cli

pytestmark = pytest.mark.integration


def test_dry_run_counts_and_estimates_without_labeling(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    write_good_images(folder, 3, np.random.default_rng(0), max_side=100)
    (folder / "notes.txt").write_text("not an image: not listed")
    args = [
        "label", "--source", folder.as_uri(), "--dataset", "dry", "--prompts", "box . disc",
        "--detector", "grounding-dino-test", "--segmenter", "efficientvit-sam-test",
        "--random-weights", "--dry-run",
    ]  # fmt: skip
    # The segmenter's runtime is chosen on this machine (`auto`), the detector stays on torch
    # (base_env): its exported graphs are per image shape, and the flow and selection tests
    # cover its choice.
    result = run_cli([*args, "--segmenter-backend", "auto"], base_env)
    bad = run_cli([*args, "--segmenter-backend", "tensorrt"], base_env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "autolabel: error: expected a backend that runs on cpu, got tensorrt"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert lines["images listed"] == "3"
    assert lines["already done (would be skipped)"] == "0"
    assert lines["to label"] == "3"
    assert float(lines["measured seconds per image (models only)"]) > 0
    runtimes = {"openvino-bf16", "openvino-fp32", "onnxruntime-fp32", "torch-fp32"}
    assert lines["segmenter runtime (this machine)"] in runtimes
    assert lines["detector runtime (this machine)"] == "torch-fp32"
    runs = run_cli(["runs"], base_env)
    assert runs.returncode == 0
    assert "dry" not in runs.stdout  # the dry run created no run


def test_bad_job_parameters_are_one_line(
    cli_in_process: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    source = tmp_path.as_uri()
    cases = {
        ("--prompts", " . . "): "prompts",
        ("--prompts", "cat", "--shard-size", "0"): "shard_size",
        ("--prompts", "cat", "--synonym", "dog"): "--synonym",
        ("--prompts", "cat", "--duplicate-policy", "merge"): "duplicate_policy",
    }
    for extra, expected in cases.items():
        code, _, err = cli_in_process(["label", "--source", source, "--dataset", "d", *extra])
        assert code == 2, err
        assert err.startswith("autolabel: error: ")
        assert expected in err
        assert err.count("\n") == 1
