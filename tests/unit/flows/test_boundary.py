"""The command line's error boundary: one line per failure, the right exit code, tracebacks in
the log file only (or on the terminal under --debug)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import DataError

from autolabel.flows.cli import main
from autolabel.flows.cli.boundary import describe, parameter_errors
from autolabel.flows.cli.logs import CommandLog, TerminalFilter, command_logging, new_command_log
from autolabel.flows.errors import ConfigError
from autolabel.models.errors import ChecksumMismatchError
from autolabel.storage.errors import DatasetBusyError, StorageConfigError

LOG = CommandLog(Path("/logs/autolabel-x.log"), Path("/logs/autolabel-x.api.log"))


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("AUTOLABEL_DEVICE: unknown\nsecond line"),
        ChecksumMismatchError("checksum mismatch for w.pt"),
        StorageConfigError("bucket 'b' does not exist"),
        DatasetBusyError("run 3 refused: dataset is being labeled by run 2"),
    ],
)
def test_expected_errors_are_one_line_exit_2(error: Exception) -> None:
    line, code = describe(error, LOG)
    assert code == 2
    assert line.startswith("autolabel: error: ")
    assert "\n" not in line


class _Options(BaseModel):
    budget: int = Field(ge=1)
    name: str = "x"

    @field_validator("name")
    @classmethod
    def _no_dots(cls, value: str) -> str:
        if "." in value:
            raise ValueError(f"expected no '.', got {value!r}")
        return value


class _OptionError(ConfigError):
    pass


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"budget": 0}, "budget: Input should be greater than or equal to 1"),
        ({"budget": 1, "name": "a.b"}, "name: expected no '.', got 'a.b'"),
    ],
)
def test_options_that_do_not_validate_are_the_commands_one_line_error(
    options: dict[str, object], line: str
) -> None:
    with pytest.raises(_OptionError) as raised, parameter_errors(_OptionError, subject="job"):
        _Options.model_validate(options)
    assert str(raised.value) == line
    assert raised.value.__cause__ is None
    assert describe(raised.value, LOG) == (f"autolabel: error: {line}", 2)


def test_database_errors_name_the_driver_error_only() -> None:
    error = DataError(
        "INSERT INTO categories ...", {"name": "x" * 5000}, Exception("value too long\nDETAIL")
    )
    line, code = describe(error, LOG)
    assert (line, code) == ("autolabel: error: database: Exception: value too long", 2)


def test_unexpected_errors_point_at_the_log_and_interrupts_exit_130() -> None:
    line, code = describe(ZeroDivisionError("division by zero"), LOG)
    assert code == 1
    assert line == (
        "autolabel: unexpected error: ZeroDivisionError: division by zero "
        "(the traceback is in /logs/autolabel-x.log)"
    )
    assert describe(KeyboardInterrupt(), LOG) == ("autolabel: interrupted", 130)


def test_terminal_filter_drops_engine_reports_and_tracebacks() -> None:
    def record(name: str, exc: bool) -> logging.LogRecord:
        info = (ValueError, ValueError("x"), None) if exc else None
        return logging.LogRecord(name, logging.ERROR, __file__, 1, "m", None, info)

    keep = TerminalFilter().filter
    assert keep(record("autolabel.tasks.labeling.runs", exc=False))
    assert not keep(record("autolabel.tasks.labeling.runs", exc=True))
    assert not keep(record("prefect.flow_runs", exc=False))
    assert not keep(record("prefect.task_runs", exc=False))


def test_the_log_file_gets_the_traceback_the_terminal_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path))
    monkeypatch.setenv("AUTOLABEL_DEVICE", "cuda")  # an old flat name: refused in one line
    with pytest.raises(SystemExit) as exit_info:
        main(["runs"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("autolabel: error: unknown setting AUTOLABEL_DEVICE")
    [log] = (tmp_path / "logs").glob("autolabel-*.log")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "ConfigError" in text


def test_command_logging_restores_the_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path))
    root = logging.getLogger()
    before = list(root.handlers)
    with command_logging(new_command_log(), debug=False) as log:
        assert len(root.handlers) == len(before) + 1
        assert log.written
    assert root.handlers == before


def test_debug_shows_the_traceback_on_the_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_API"))}
    env |= {"AUTOLABEL_HOME": str(tmp_path), "AUTOLABEL_DEVICE": "cuda"}
    code = "from autolabel.flows.cli import main; main(['runs', '--debug'])"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith(
        "autolabel: error: unknown setting AUTOLABEL_DEVICE; did you mean AUTOLABEL_MODELS__DEVICE?"
        " (nested settings are AUTOLABEL_<SECTION>__<FIELD>; see the README's table)"
    )
