"""Where a command's logs go: everything to a log file, little to the terminal.

Each command writes its log (Prefect's flow and task run logs included, tracebacks included) to
`<AUTOLABEL_HOME>/logs/autolabel-<UTC time>-<pid>.log`, created on the first record; the newest
`KEEP_LOGS` files are kept. The terminal shows warnings and errors as one line each, without
tracebacks, and none of Prefect's engine reports (the command's own one-line error replaces
them). `--debug` shows everything, tracebacks included.
"""

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

KEEP_LOGS = 50
_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@dataclass(frozen=True, slots=True)
class CommandLog:
    """The log files of one command.

    Attributes:
        path: The command's log (Python and Prefect logging).
        api_path: The output of the temporary Prefect API server, if the command starts one.
    """

    path: Path
    api_path: Path
    written: bool = True


_current: ContextVar[CommandLog | None] = ContextVar("autolabel_command_log", default=None)


class TerminalFilter(logging.Filter):
    """Lets through what a person at the terminal needs: no engine reports, no tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(_ENGINE_LOGGERS):
            return False
        return record.exc_info is None and record.stack_info is None


def logs_folder() -> Path:
    """`<AUTOLABEL_HOME>/logs`, read from the environment (settings may be what failed)."""
    home = os.environ.get("AUTOLABEL_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".autolabel") / "logs"


def _prune(folder: Path) -> None:
    logs = sorted(folder.glob("autolabel-*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[:-KEEP_LOGS]:
        old.unlink(missing_ok=True)


def _is_terminal(handler: logging.Handler) -> bool:
    from prefect.logging.handlers import PrefectConsoleHandler

    return isinstance(handler, PrefectConsoleHandler) or type(handler) is logging.StreamHandler


def new_command_log() -> CommandLog:
    """The log files of a command starting now (created on first use, none when the logs folder
    cannot be written)."""
    folder = logs_folder()
    stem = f"autolabel-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _prune(folder)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False  # a read-only home: the terminal still gets the one-line errors
    return CommandLog(folder / f"{stem}.log", folder / f"{stem}.api.log", writable)


@contextlib.contextmanager
def command_logging(log: CommandLog, *, debug: bool) -> Iterator[CommandLog]:
    """For the block: every record to the command's log file, a filtered terminal.

    Enter after Prefect is imported (its logging setup replaces the root handlers); everything
    is put back on exit (the CLI may run more than once in one process, as tests do).
    """
    root = logging.getLogger()
    terminals = [h for h in root.handlers if _is_terminal(h)]
    saved = [(h, h.level) for h in terminals]
    terminal_filter = TerminalFilter()
    for handler in terminals if not debug else []:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.addFilter(terminal_filter)
    to_file: logging.Handler | None = None
    if log.written:
        to_file = logging.FileHandler(log.path, encoding="utf-8", delay=True)
    package = logging.getLogger("autolabel")
    package_level = package.level
    if to_file is not None:
        to_file.setFormatter(logging.Formatter(_FORMAT))
        to_file.setLevel(logging.DEBUG if debug else logging.INFO)
        root.addHandler(to_file)
        package.setLevel(logging.DEBUG if debug else logging.INFO)
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)
        package.setLevel(package_level)
        for handler, level in saved:
            handler.setLevel(level)
            handler.removeFilter(terminal_filter)
        if to_file is not None:
            root.removeHandler(to_file)
            to_file.close()


def current_log() -> CommandLog:
    """The running command's log files (a throwaway location outside a command)."""
    log = _current.get()
    if log is None:
        folder = logs_folder()
        return CommandLog(folder / "autolabel.log", folder / "autolabel.api.log", False)
    return log
