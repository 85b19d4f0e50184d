"""`autolabel doctor` against the real PostgreSQL server and moto S3, and with each one down."""

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from autolabel.flows.cli.doctor import check_weight_file
from autolabel.models.grounding_dino import tiny_test_config
from autolabel.models.weight_files import WeightFile, sha256_of
from tests.conftest import PostgresDatabases, free_port
from tests.unit.models.original_layout import write_original_checkpoint

pytestmark = pytest.mark.integration


InProcess = Callable[..., tuple[int, str, str]]


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(result.stdout)}


@pytest.fixture
def doctor(
    cli_in_process: InProcess,
) -> Callable[[dict[str, str]], subprocess.CompletedProcess[str]]:
    """`autolabel doctor --json` in this process with `env` (`base_env` and overrides)."""

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        code, out, err = cli_in_process(["doctor", "--json"], **env)
        return subprocess.CompletedProcess(["doctor", "--json"], code, out, err)

    return run


def test_doctor_passes_on_postgres_and_s3(
    doctor: Callable[[dict[str, str]], subprocess.CompletedProcess[str]],
    base_env: dict[str, str],
    postgres_databases: PostgresDatabases,
    s3_bucket: str,
    s3_env: str,
) -> None:
    from autolabel.storage.db.engine import upgrade_to_head

    postgres_url = postgres_databases.create()
    upgrade_to_head(postgres_url)
    env = base_env | {
        "AUTOLABEL_DATABASE__URL": postgres_url,
        "AUTOLABEL_STORAGE__URL": f"s3://{s3_bucket}/images",
        "AUTOLABEL_S3__ENDPOINT_URL": s3_env,
    }
    result = doctor(env)
    assert result.returncode == 0, result.stdout + result.stderr
    found = checks(result)
    assert found["database"]["status"] == "ok"
    assert "schema at" in found["database"]["detail"]
    assert found["storage"]["status"] == "ok"
    assert found["storage"]["detail"] == f"s3://{s3_bucket}/images"
    assert found["weights efficientvit-sam-l0"]["status"] == "warn"  # absent, not required
    assert "testing-secret-key" not in result.stdout + result.stderr


def test_doctor_fails_when_the_database_is_down(
    doctor: Callable[[dict[str, str]], subprocess.CompletedProcess[str]],
    base_env: dict[str, str],
    s3_bucket: str,
    s3_env: str,
) -> None:
    env = base_env | {
        "AUTOLABEL_DATABASE__URL": f"postgresql+psycopg://postgres:pw-123@127.0.0.1:{free_port()}/x",
        "AUTOLABEL_STORAGE__URL": f"s3://{s3_bucket}",
        "AUTOLABEL_S3__ENDPOINT_URL": s3_env,
    }
    result = doctor(env)
    assert result.returncode == 1
    database = checks(result)["database"]
    assert database["status"] == "fail"
    assert "cannot connect to database" in database["detail"]
    assert "\n" not in database["detail"]
    assert "pw-123" not in result.stdout + result.stderr
    assert checks(result)["storage"]["status"] == "ok"


def test_doctor_fails_when_s3_is_down_or_bucket_missing(
    doctor: Callable[[dict[str, str]], subprocess.CompletedProcess[str]],
    base_env: dict[str, str],
    s3_env: str,
) -> None:
    down = base_env | {
        "AUTOLABEL_STORAGE__URL": "s3://some-bucket",
        "AUTOLABEL_S3__ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
    }
    result = doctor(down)
    assert result.returncode == 1
    assert checks(result)["storage"]["status"] == "fail"
    assert checks(result)["database"]["status"] in {"ok", "warn"}  # embedded SQLite

    missing = base_env | {
        "AUTOLABEL_STORAGE__URL": "s3://no-such-bucket",
        "AUTOLABEL_S3__ENDPOINT_URL": s3_env,
    }
    result = doctor(missing)
    assert result.returncode == 1
    storage = checks(result)["storage"]
    assert storage["status"] == "fail"
    assert "no-such-bucket" in storage["detail"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AUTOLABEL_STORAGE__URL", "ftp://host/x", "AUTOLABEL_STORAGE__URL='ftp://host/x'"),
        ("AUTOLABEL_DATABASE__URL", "mysql://u@h/db", "AUTOLABEL_DATABASE__URL='mysql://u@h/db'"),
        ("AUTOLABEL_MODELS__DEVICE", "tpu", "AUTOLABEL_MODELS__DEVICE='tpu'"),
    ],
)
def test_bad_configuration_is_one_line_without_traceback(
    cli_in_process: Callable[..., tuple[int, str, str]], variable: str, value: str, expected: str
) -> None:
    code, _, err = cli_in_process(["doctor"], **{variable: value})
    assert code == 2
    assert err.startswith(f"autolabel: error: {expected}")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_unreachable_database_for_a_command_is_one_line(
    cli_in_process: Callable[..., tuple[int, str, str]],
) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x"
    code, _, err = cli_in_process(["runs"], AUTOLABEL_DATABASE__URL=url)
    assert code == 2
    assert err.startswith("autolabel: error: cannot connect to database")
    assert "Traceback" not in err


def test_every_command_has_help() -> None:
    from typer.testing import CliRunner

    from autolabel.flows.cli.app import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = [
        "doctor", "label", "export", "runs", "demo", "serve", "db", "ingest-sa1b",
        "export-sa1b", "train", "eval",
    ]  # fmt: skip
    for command in commands:
        assert command in top.output
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output
    for sub in ("upgrade", "status"):
        assert runner.invoke(app, ["db", sub, "--help"]).exit_code == 0
    version = runner.invoke(app, ["--version"])
    assert version.output.startswith("autolabel ")


def test_doctor_fails_on_unloadable_unpinned_weights_and_notices_a_change(
    doctor: Callable[[dict[str, str]], subprocess.CompletedProcess[str]],
    base_env: dict[str, str],
) -> None:
    """Random bytes under the released GroundingDINO filename (whose digest is not pinned) are a
    `fail` line and exit code 1; after the content changes, the next run says so."""
    path = Path(base_env["AUTOLABEL_HOME"]) / "weights" / "groundingdino_swint_ogc.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(4096))
    first_digest = sha256_of(path)
    result = doctor(base_env)
    assert result.returncode == 1, result.stdout + result.stderr
    line = checks(result)["weights grounding-dino-swint-ogc"]
    assert line["status"] == "fail"
    assert str(path) in line["detail"]
    assert "\n" not in line["detail"]
    ledger = json.loads((path.parent / "weights-ledger.json").read_text())
    assert ledger["files"][path.name]["sha256"] == first_digest

    path.write_bytes(os.urandom(4096))
    result = doctor(base_env)
    assert result.returncode == 1
    line = checks(result)["weights grounding-dino-swint-ogc"]
    assert line["status"] == "fail"
    assert f"sha256 {sha256_of(path)}, was {first_digest}" in line["detail"]
    assert "changed since " in line["detail"]


def test_doctor_line_for_valid_unpinned_weights(tmp_path: Path) -> None:
    """The `ok` and `warn` paths of a weights line. A valid GroundingDINO-SwinT file is 700 MB,
    too big to write in a test, so the line is built by the doctor's own check function for a
    `WeightFile` without a pinned digest pointing at a small original-layout checkpoint of the
    registered test architecture (`grounding-dino-test`): the same code path as the released
    files, on a smaller architecture."""
    weights = WeightFile(filename="tiny.pth", url="https://example.invalid/tiny.pth")
    path = write_original_checkpoint(tiny_test_config(), tmp_path / weights.filename)
    first = check_weight_file("grounding-dino-test", weights, tmp_path)
    assert first.status == "ok"
    assert first.detail == f"{path}: layout verified (290 tensors), sha256 {sha256_of(path)[:16]}"
    cached = check_weight_file("grounding-dino-test", weights, tmp_path)
    assert cached.status == "ok"
    assert "proven earlier for this sha256" in cached.detail

    old_digest = sha256_of(path)
    write_original_checkpoint(tiny_test_config(), path, seed=1)
    changed = check_weight_file("grounding-dino-test", weights, tmp_path)
    assert changed.status == "warn"
    assert "layout verified (290 tensors)" in changed.detail
    assert f"sha256 {sha256_of(path)}, was {old_digest}" in changed.detail
    assert check_weight_file("grounding-dino-test", weights, tmp_path).status == "ok"
