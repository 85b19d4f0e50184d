"""The `autolabel` command line.

Every subcommand has `--help`. Expected failures (bad configuration, unreachable services, bad
input) end with a one-line `autolabel: error: ...` message and exit code 2, never a traceback.
"""

import sys
from importlib.metadata import version

import typer

from autolabel.flows.cli.doctor import doctor
from autolabel.flows.errors import FlowError
from autolabel.models.errors import ModelError
from autolabel.storage.errors import StorageError

app = typer.Typer(
    name="autolabel",
    help="Text-prompted bulk instance segmentation into COCO, with retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(doctor)

EXPECTED_ERRORS = (FlowError, ModelError, StorageError)
EXIT_ERROR = 2


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"autolabel {version('autolabel')}")
        raise typer.Exit


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Text-prompted bulk instance segmentation into COCO, with retraining."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning expected errors into one-line messages."""
    try:
        app(args=argv, prog_name="autolabel", standalone_mode=True)
    except EXPECTED_ERRORS as exc:
        sys.stderr.write(f"autolabel: error: {exc}\n")
        sys.exit(EXIT_ERROR)
