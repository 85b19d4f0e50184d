"""The typer application behind `autolabel`; `autolabel.flows.cli.main` runs it."""

from importlib.metadata import version

import typer

from autolabel.flows.cli.checks import needs_database
from autolabel.flows.cli.db import db_app
from autolabel.flows.cli.demo import demo
from autolabel.flows.cli.doctor import doctor
from autolabel.flows.cli.label import export, label, runs
from autolabel.flows.cli.quality import quality_report_command
from autolabel.flows.cli.review import review_app
from autolabel.flows.cli.review_export import export_review_command
from autolabel.flows.cli.review_import import import_review_command
from autolabel.flows.cli.sa1b_commands import export_sa1b, ingest_sa1b
from autolabel.flows.cli.sampling import sample_review_command
from autolabel.flows.cli.serve import serve
from autolabel.flows.cli.train import evaluate, train
from autolabel.flows.cli.tuning import compare_prompts_command, tune_thresholds_command

app = typer.Typer(
    name="autolabel",
    help="Text-prompted bulk instance segmentation into COCO, with retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(doctor)
# Commands that run flows (or read runs) check the database schema before they start.
app.command()(needs_database(label))
app.command()(needs_database(export))
app.command()(needs_database(runs))
app.command()(needs_database(demo))
app.command()(needs_database(serve))
app.command(name="ingest-sa1b")(needs_database(ingest_sa1b))
app.command(name="export-sa1b")(needs_database(export_sa1b))
app.command(name="export-review")(needs_database(export_review_command))
app.command(name="quality-report")(needs_database(quality_report_command))
app.command(name="import-review")(needs_database(import_review_command))
app.command(name="sample-review")(needs_database(sample_review_command))
app.command(name="tune-thresholds")(needs_database(tune_thresholds_command))
app.command(name="compare-prompts")(needs_database(compare_prompts_command))
app.command()(train)
app.command(name="eval")(evaluate)
app.add_typer(db_app, name="db")
app.add_typer(review_app, name="review")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"autolabel {version('autolabel')}")
        raise typer.Exit


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show tracebacks and Prefect's logs on the terminal (they always go to the log "
        "file in <AUTOLABEL_HOME>/logs/). Accepted anywhere on the command line.",
    ),
) -> None:
    """Text-prompted bulk instance segmentation into COCO, with retraining."""
    del show_version, debug  # handled eagerly, and by `main` before typer parses the line
