"""The command line's one error boundary: what a failed command prints, and its exit code.

- An expected error (configuration, input, storage, weights, database) prints exactly one line,
  `autolabel: error: ...`, and exits 2.
- An interruption (Ctrl-C) prints `autolabel: interrupted` and exits 130.
- Anything else prints `autolabel: unexpected error: ...` naming the log file that holds the
  traceback, and exits 1.
Tracebacks go to the command's log file, and to the terminal only under `--debug`.

A command's options that do not validate (its pydantic parameter model) are an expected error:
`parameter_errors` turns the `ValidationError` into the command's `FlowError` with one line.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from autolabel.flows.cli.logs import CommandLog
from autolabel.flows.errors import FlowError
from autolabel.models.errors import ModelError
from autolabel.storage.errors import StorageError

EXIT_ERROR = 2
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130

EXPECTED_ERRORS = (FlowError, ModelError, StorageError)
logger = logging.getLogger("autolabel.cli")


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def validation_line(exc: ValidationError, *, subject: str, within: Sequence[str] = ()) -> str:
    """The first error of `exc` in one line: where (`within` then its location, e.g.
    `policy.budget`; `subject` for the model as a whole) and pydantic's message without its
    "Value error, " prefix."""
    first = exc.errors()[0]
    where = ".".join([*within, *(str(p) for p in first["loc"])]) or subject
    return f"{where}: {str(first['msg']).removeprefix('Value error, ')}"


@contextmanager
def parameter_errors(error: type[FlowError], *, subject: str) -> Iterator[None]:
    """Raise a `ValidationError` of the block as `error` with its `validation_line`.

    Args:
        error: The command's parameter error (a `FlowError`: one line, exit code 2).
        subject: What the line names when the model as a whole is wrong, e.g. "job".
    """
    try:
        yield
    except ValidationError as exc:
        raise error(validation_line(exc, subject=subject)) from None


def _database_message(exc: DBAPIError) -> str:
    original = exc.orig if exc.orig is not None else exc
    lines = str(original).strip().splitlines()
    return f"database: {type(original).__name__}: {lines[0] if lines else ''}"


def describe(exc: BaseException, log: CommandLog) -> tuple[str, int]:
    """The line a failed command prints (without the trailing newline) and its exit code."""
    if isinstance(exc, EXPECTED_ERRORS):
        return f"autolabel: error: {one_line(str(exc))}", EXIT_ERROR
    if isinstance(exc, DBAPIError):
        return f"autolabel: error: {one_line(_database_message(exc))}", EXIT_ERROR
    if isinstance(exc, KeyboardInterrupt):
        return "autolabel: interrupted", EXIT_INTERRUPTED
    where = f"the traceback is in {log.path}" if log.written else "rerun with --debug to see it"
    message = one_line(f"{type(exc).__name__}: {exc}")
    return f"autolabel: unexpected error: {message} ({where})", EXIT_UNEXPECTED


def record(exc: BaseException, line: str) -> None:
    """Log the failure with its traceback (to the log file; to the terminal under --debug)."""
    logger.error("%s", line, exc_info=(type(exc), exc, exc.__traceback__))
