"""Checks the command line runs before a command starts any flow."""

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import typer

from autolabel.flows.cli.logs import current_log
from autolabel.flows.prefect_api import flow_api
from autolabel.flows.resources import prepare_database
from autolabel.flows.settings import load_settings

P = ParamSpec("P")
R = TypeVar("R")


def require_database() -> None:
    """Check the configured database's schema before any flow starts.

    An empty database is migrated (one line on stderr says so); another schema revision raises
    `ConfigError` ("run `autolabel db upgrade`"), which the CLI prints as one line, exit 2.
    """
    notice = prepare_database(load_settings())
    if notice is not None:
        typer.echo(f"autolabel: {notice}", err=True)


def needs_database(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a CLI command so that `require_database` runs after its options are parsed (so
    `--help` and bad options never touch the database) and before its body."""

    @functools.wraps(command)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        require_database()
        return command(*args, **kwargs)

    return checked


@contextlib.contextmanager
def prefect_for_flows() -> Iterator[None]:
    """Around a command's flow calls: the configured Prefect API, or a temporary one that lives
    as long as the command (and dies with it, even on SIGKILL); nested uses share one."""
    with flow_api(load_settings(), current_log().api_path):
        yield
