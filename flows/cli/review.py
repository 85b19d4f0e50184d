"""`autolabel review mark`: record review decisions on stored annotations."""

import typer

from autolabel.flows.cli.checks import require_database
from autolabel.flows.resources import database_url
from autolabel.flows.settings import load_settings
from autolabel.storage.db.engine import make_engine
from autolabel.storage.db.review import REVIEW_STATUSES, mark_annotations, parse_review_status

review_app = typer.Typer(
    help="Review decisions on stored annotations (what export-sa1b --accepted-only exports).",
    no_args_is_help=True,
)


@review_app.command()
def mark(
    dataset: str = typer.Option(..., help="Dataset name."),
    status: str = typer.Option(..., help=f"The decision: {', '.join(REVIEW_STATUSES)}."),
    run: int | None = typer.Option(None, help="Only this label run's annotations."),
    category: str | None = typer.Option(None, help="Only this category's annotations."),
    min_score: float | None = typer.Option(
        None, help="Only annotations with a score of at least this (unscored ones never match)."
    ),
    max_score: float | None = typer.Option(
        None, help="Only annotations with a score below this (unscored ones never match)."
    ),
    image: list[str] = typer.Option(
        [], help="Only this image's annotations (its storage URL). Repeatable."
    ),
) -> None:
    """Mark the dataset's annotations matching every given filter as accepted, rejected or
    unreviewed (without filters: all of them)."""
    decision = parse_review_status(status)
    require_database()  # the schema is current (an empty database is migrated)
    engine = make_engine(database_url(load_settings()))
    try:
        marked = mark_annotations(
            engine,
            dataset=dataset,
            status=decision,
            run_id=run,
            category=category,
            min_score=min_score,
            max_score=max_score,
            image_urls=image,
        )
    finally:
        engine.dispose()
    typer.echo(f"marked {marked} annotations of dataset {dataset!r} {decision.value}")
