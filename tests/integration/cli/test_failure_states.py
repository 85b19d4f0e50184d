"""Every failure of `autolabel label` / `export` ends in one line on the terminal (exit 2, no
traceback) and, once a run exists, in a recorded final state with its reason.

Each case runs the command line (`autolabel.flows.cli.main`, the console script's entry) in the
test's process against the real services: the embedded SQLite or the PostgreSQL server, the
moto S3 server, and the session's Prefect test API (the console script in a process of its
own, with its temporary Prefect API, is what test_label_cli and the fault tests run). Before
these fixes, the same commands printed Prefect tracebacks, left runs `running`, stored a
5,000-character category on SQLite (and crashed PostgreSQL with DataError), marked images with
NaN boxes done, and followed manifest URLs anywhere.
"""

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import boto3
import numpy as np
import pytest

from tests.conftest import PostgresDatabases
from tests.corpus import write_good_images
from tests.integration.cli.conftest import error_lines

pytestmark = pytest.mark.integration

Autolabel = Callable[[list[str], dict[str, str]], subprocess.CompletedProcess[str]]

TEST_MODELS = (
    "--detector", "grounding-dino-test", "--segmenter", "efficientvit-sam-test",
    "--random-weights",
)  # fmt: skip


@pytest.fixture
def autolabel(flow_cli_in_process: Autolabel) -> Autolabel:
    return flow_cli_in_process


def images(folder: Path, n: int = 3) -> str:
    write_good_images(folder, n, np.random.default_rng(0), max_side=64)
    return folder.as_uri()


def label(source: str, dataset: str, *extra: str) -> list[str]:
    return ["label", "--source", source, "--dataset", dataset, "--prompts", "box . disc", *extra]


def sqlite_rows(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    path = Path(env["AUTOLABEL_HOME"]) / "autolabel.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


def runs(env: dict[str, str]) -> list[tuple[object, ...]]:
    return sqlite_rows(env, "SELECT id, status, status_reason FROM label_runs ORDER BY id")


def test_a_source_that_cannot_be_listed_fails_its_run_in_one_line(
    autolabel: Autolabel, base_env: dict[str, str], tmp_path: Path, s3_bucket: str, s3_env: str
) -> None:
    env = base_env | {"AUTOLABEL_S3__ENDPOINT_URL": s3_env}
    cases = {
        (tmp_path / "no-such-folder").as_uri(): "is not an existing folder",
        f"s3://{s3_bucket}-missing/raw/": "does not exist",
    }
    for source, expected in cases.items():
        result = autolabel(label(source, "unlisted", *TEST_MODELS), env)
        assert result.returncode == 2, result.stderr[-3000:]
        [line] = error_lines(result)
        assert line.startswith("autolabel: error: ")
        assert expected in line
        assert result.stderr.strip().splitlines() == [line]  # no progress bar either
    recorded = runs(env)
    assert [status for _, status, _ in recorded] == ["failed", "failed"]
    for (_, _, reason), expected in zip(recorded, cases.values(), strict=True):
        assert expected in str(reason)
    listing = autolabel(["runs"], env)
    assert listing.returncode == 0
    assert "run 1 failed: error: StorageConfigError:" in " ".join(listing.stdout.split())


def test_bad_weights_and_bad_manifests_fail_in_one_line(
    autolabel: Autolabel, base_env: dict[str, str], tmp_path: Path
) -> None:
    source = images(tmp_path / "imgs")
    weights = Path(base_env["AUTOLABEL_HOME"]) / "weights"
    weights.mkdir(parents=True)
    (weights / "efficientvit_sam_l0.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    result = autolabel(label(source, "weights", "--detector", "grounding-dino-test"), base_env)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = error_lines(result)
    assert "checksum mismatch" in line
    assert "efficientvit_sam_l0.pt" in line

    (tmp_path / "imgs" / "list.txt").write_text("img_0000.jpg\n../../etc/passwd\n")
    manifest = (tmp_path / "imgs" / "list.txt").as_uri()
    result = autolabel(label(source, "manifest", "--manifest", manifest, *TEST_MODELS), base_env)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = error_lines(result)
    assert f"manifest {manifest} line 2" in line
    reasons = [str(reason) for _, status, reason in runs(base_env) if status == "failed"]
    assert len(reasons) == 2
    assert reasons[0].startswith("error: ChecksumMismatchError: ")
    assert reasons[1].startswith("error: FormatError: manifest ")


def test_manifest_urls_stay_within_the_allowed_roots(
    autolabel: Autolabel, base_env: dict[str, str], tmp_path: Path, s3_bucket: str, s3_env: str
) -> None:
    env = base_env | {"AUTOLABEL_S3__ENDPOINT_URL": s3_env}
    source = images(tmp_path / "imgs", 2)
    other = images(tmp_path / "other", 1)
    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key="x/img_0000.jpg", Body=b"not read")
    manifest = tmp_path / "imgs" / "list.txt"
    outside = f"s3://{s3_bucket}/x/img_0000.jpg"
    manifest.write_text(f"img_0000.jpg\n{outside}\nfile:///etc/passwd\n")
    argv = label(source, "roots", "--manifest", manifest.as_uri(), *TEST_MODELS)
    result = autolabel(argv, env)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = error_lines(result)
    assert f"line 2: {outside} is outside the job's source {source}" in line
    assert "--allow-root" in line
    assert sqlite_rows(env, "SELECT count(*) FROM images") == [(0,)]  # nothing registered

    manifest.write_text(f"img_0000.jpg\n{other}/img_0000.jpg\n")
    argv = label(source, "roots", "--manifest", manifest.as_uri(), "--allow-root", other)
    result = autolabel([*argv, *TEST_MODELS], env)
    assert result.returncode == 0, result.stderr[-3000:]
    keys = sqlite_rows(env, "SELECT storage_key FROM images ORDER BY storage_key")
    assert keys == sorted([(f"{other}/img_0000.jpg",), (f"{source}/img_0000.jpg",)])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_oversized_prompts_are_refused_before_anything_is_stored(
    autolabel: Autolabel,
    base_env: dict[str, str],
    tmp_path: Path,
    postgres_databases: PostgresDatabases,
    backend: str,
) -> None:
    env = dict(base_env)
    if backend == "postgresql":
        env["AUTOLABEL_DATABASE__URL"] = postgres_databases.create()
    source = images(tmp_path / "imgs", 1)
    cases = {
        "x" * 5000: "expected each category to have at most 200 characters, got 5000",
        " . ".join(f"thing{i}" for i in range(1000)): "expected at most 300 categories, got 1000",
    }
    for prompts, expected in cases.items():
        argv = ["label", "--source", source, "--dataset", "big", "--prompts", prompts]
        result = autolabel([*argv, *TEST_MODELS], env)
        assert result.returncode == 2, result.stderr[-3000:]
        [line] = [line for line in error_lines(result) if line.startswith("autolabel: error")]
        assert expected in line
        assert len(line) < 400
    if backend == "sqlite":  # PostgreSQL: the schema check alone ran (no dataset table rows)
        assert sqlite_rows(env, "SELECT count(*) FROM datasets") in ([], [(0,)])


def test_dry_run_shows_the_detector_passes_a_prompt_costs(
    autolabel: Autolabel, base_env: dict[str, str], tmp_path: Path
) -> None:
    source = images(tmp_path / "imgs", 1)
    prompts = " . ".join(f"category number {i}" for i in range(250))
    argv = ["label", "--source", source, "--dataset", "many", "--prompts", prompts, "--dry-run"]
    result = autolabel([*argv, *TEST_MODELS], base_env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["categories"] == "250"
    assert int(rows["detector passes per image"]) >= 4  # ~1,000 tokens, captions of <= 256
    assert "4 times" not in result.stderr  # a dry run labels nothing, so it does not warn


def test_bad_boxes_fail_their_image_and_unwritable_exports_are_one_line(
    autolabel: Autolabel, base_env: dict[str, str], tmp_path: Path
) -> None:
    source = images(tmp_path / "imgs", 3)
    document = {
        "images": [
            {"id": i + 1, "file_name": name, "width": 64, "height": 64}
            for i, name in enumerate(("img_0000.jpg", "img_0001.png", "img_0002.jpg"))
        ],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": ["NaN", 1, 20, 20]},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [1, 1, "Infinity", 20]},
        ],
    }
    coco = tmp_path / "imgs" / "boxes.json"
    coco.write_text(json.dumps(document).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    argv = [
        "label", "--source", source, "--dataset", "boxes", "--boxes-from", coco.as_uri(),
        "--segmenter", "efficientvit-sam-test", "--random-weights", "--max-failure-fraction", "1",
    ]  # fmt: skip
    result = autolabel(argv, base_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    outcomes = sqlite_rows(
        base_env,
        "SELECT i.storage_key, r.status, r.failure_reason FROM image_results r "
        "JOIN images i ON i.id = r.image_id ORDER BY i.storage_key",
    )
    assert [(str(k).rsplit("/", 1)[1], s) for k, s, _ in outcomes] == [
        ("img_0000.jpg", "done"),
        ("img_0001.png", "failed"),
        ("img_0002.jpg", "failed"),
    ]
    assert str(outcomes[1][2]).startswith("invalid_boxes: annotation 2 bbox [nan, 1, 20, 20]")
    assert "not finite" in str(outcomes[2][2])
    assert "invalid_boxes" in result.stdout  # the summary's failures by reason

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for output in ("/proc/x.json", str(a_file / "x.json")):
        exported = autolabel(["export", "--dataset", "boxes", "--output", output], base_env)
        assert exported.returncode == 2, exported.stderr[-3000:]
        [line] = error_lines(exported)
        assert line.startswith(f"autolabel: error: cannot write the export to {output}: ")
