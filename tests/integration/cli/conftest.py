"""Fixtures for command-line tests: a clean environment and a way to run `autolabel`."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_runner import run_in_process

AUTOLABEL = Path(sys.executable).parent / "autolabel"


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `autolabel ARGS` in a fresh interpreter (as the console script does)."""
    code = f"from autolabel.flows.cli import main; main({args!r})"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )


def autolabel(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user does."""
    return subprocess.run(
        [str(AUTOLABEL), *args], env=env, capture_output=True, text=True, timeout=600
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The `autolabel: ...` lines a command printed on stderr, after checking that nothing on
    its terminal was a traceback."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("autolabel:")]


@pytest.fixture(scope="session")
def cli_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PREFECT_HOME for the command-line tests: the first command's temporary Prefect API
    creates its database, later ones start in ~3 s instead of ~8 s."""
    return tmp_path_factory.mktemp("cli-prefect-home")


@pytest.fixture
def base_env(tmp_path: Path, cli_prefect_home: Path, runtime_cache_dir: Path) -> dict[str, str]:
    """The machine's environment without autolabel or Prefect API settings, homes in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_API"))}
    env.update(
        AUTOLABEL_HOME=str(tmp_path / "home"),
        AUTOLABEL_MODELS__RUNTIME_CACHE_DIR=str(runtime_cache_dir),
        # Commands run the torch runtimes unless a test asks for `auto`: each command is a new
        # process, and `auto` compiles the exported graphs per process (the selection itself
        # is tested in test_label_cli and in the flow tests).
        AUTOLABEL_MODELS__SEGMENTER_BACKEND="torch",
        AUTOLABEL_MODELS__DETECTOR_BACKEND="torch",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing-secret-key",  # noqa: S106 - moto accepts any key
        AWS_DEFAULT_REGION="us-east-1",
        PREFECT_HOME=str(cli_prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        COLUMNS="200",
    )
    return env


@pytest.fixture
def cli_in_process(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run `autolabel ARGS` in this process with `base_env` (plus overrides); returns
    (exit code, stdout, stderr). For commands that start no flow (no Prefect server)."""
    from autolabel.flows.settings import get_settings

    def run(args: list[str], **env: str) -> tuple[int, str, str]:
        for name in list(os.environ):
            if name.startswith("AUTOLABEL_"):
                monkeypatch.delenv(name)
        for name, value in (base_env | env).items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return run_in_process(args, capsys)

    return run


@pytest.fixture
def flow_cli_in_process(
    cli_in_process: Callable[..., tuple[int, str, str]], prefect_harness: None
) -> Callable[[list[str], dict[str, str]], subprocess.CompletedProcess[str]]:
    """Run `autolabel ARGS` in this process with `env` set (`base_env` and overrides), for
    commands that run flows: they talk to the session's Prefect test API, as to a configured
    server, instead of starting a temporary API each. Returns what `autolabel` returns.

    For tests of what a command ends in (its one line, the recorded state): the console script
    in its own process, with its temporary API, is run by the other command-line tests."""
    from prefect.settings import PREFECT_API_URL

    api = {"PREFECT_API_URL": str(PREFECT_API_URL.value())}

    def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        code, out, err = cli_in_process(args, **(env | api))
        return subprocess.CompletedProcess(args, code, out, err)

    return run
