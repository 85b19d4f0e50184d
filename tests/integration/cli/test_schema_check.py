"""Commands that run flows check the database schema first: an empty database is migrated, any
other state stops with one line ("run `autolabel db upgrade`"), before a flow run starts."""

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from autolabel.storage.db.engine import head_revision
from tests.conftest import PostgresDatabases
from tests.corpus import write_good_images

pytestmark = pytest.mark.integration

AUTOLABEL = Path(sys.executable).parent / "autolabel"
FLOW_STARTED = ("Beginning flow run", "Created flow run", "Finished in state")


def autolabel(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user does."""
    return subprocess.run(
        [str(AUTOLABEL), *args], env=env, capture_output=True, text=True, timeout=600
    )


def revision(url: str) -> str | None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        tables = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_name = 'alembic_version'"
        ).fetchall()
        if not tables:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def images(tmp_path: Path) -> str:
    folder = tmp_path / "images"
    write_good_images(folder, 2, np.random.default_rng(0), max_side=64)
    return folder.as_uri()


def label_args(source: str, *extra: str) -> list[str]:
    return [
        "label", "--source", source, "--dataset", "schema", "--prompts", "box . disc",
        "--detector", "grounding-dino-test", "--segmenter", "efficientvit-sam-test",
        "--random-weights", *extra,
    ]  # fmt: skip


def test_empty_database_is_migrated_with_one_notice(
    base_env: dict[str, str], postgres_databases: PostgresDatabases, images: str
) -> None:
    url = postgres_databases.create()
    env = base_env | {"AUTOLABEL_DATABASE__URL": url, "AUTOLABEL_MODELS__DEVICE": "cpu"}
    result = autolabel(label_args(images, "--dry-run"), env)
    assert result.returncode == 0, result.stderr[-3000:]
    notices = [line for line in result.stderr.splitlines() if "was empty" in line]
    assert len(notices) == 1, result.stderr[-3000:]
    assert head_revision() in notices[0]
    assert revision(url) == head_revision()


OTHER_REVISION = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)",
    "INSERT INTO alembic_version VALUES ('ffff')",
)
TABLES_WITHOUT_REVISION = ("CREATE TABLE unrelated (id INTEGER PRIMARY KEY)",)


def command_args(command: str, images: str, tmp_path: Path) -> list[str]:
    return {
        "label": label_args(images),
        "export": ["export", "--dataset", "d", "--output", str(tmp_path / "out.json")],
        "export-sa1b": ["export-sa1b", "--dataset", "d", "--output", (tmp_path / "s").as_uri()],
        "ingest-sa1b": ["ingest-sa1b", str(tmp_path), "--to", (tmp_path / "s").as_uri()],
        "runs": ["runs"],
        "review": ["review", "mark", "--dataset", "d", "--status", "accepted"],
    }[command]


# As a user runs it (a fresh interpreter, the console script) for both states; every other command
# is checked in-process below (the same check runs first).
@pytest.mark.parametrize(
    ("state", "command"),
    [
        (OTHER_REVISION, "label"),
        (TABLES_WITHOUT_REVISION, "export-sa1b"),
    ],
)
def test_database_in_another_state_stops_before_any_flow(
    base_env: dict[str, str],
    postgres_databases: PostgresDatabases,
    images: str,
    tmp_path: Path,
    state: tuple[str, ...],
    command: str,
) -> None:
    url = postgres_databases.create()
    execute(url, *state)
    before = revision(url)
    args = command_args(command, images, tmp_path)
    env = base_env | {"AUTOLABEL_DATABASE__URL": url, "AUTOLABEL_MODELS__DEVICE": "cpu"}
    result = autolabel(args, env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output
    assert not [text for text in FLOW_STARTED if text in output], output[-3000:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("autolabel: error: database ")
    assert "autolabel db upgrade" in lines[0]
    assert "postgres@" in lines[0]  # names the database (without a password)
    assert revision(url) == before  # never migrated implicitly


@pytest.mark.parametrize("command", ["export", "ingest-sa1b", "runs", "review"])
def test_every_database_command_checks_the_schema_first(
    cli_in_process: Callable[..., tuple[int, str, str]],
    postgres_databases: PostgresDatabases,
    images: str,
    tmp_path: Path,
    command: str,
) -> None:
    url = postgres_databases.create()
    execute(url, *OTHER_REVISION)
    code, out, err = cli_in_process(
        command_args(command, images, tmp_path), AUTOLABEL_DATABASE__URL=url
    )
    assert code == 2, out + err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "autolabel db upgrade" in lines[0]
    assert revision(url) == "ffff"
