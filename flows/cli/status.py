"""`autolabel runs`: recent label runs and their counts."""

from rich.console import Console
from rich.table import Table

from autolabel.flows.resources import database_url, prepare_database
from autolabel.flows.settings import Settings
from autolabel.storage.db import queries
from autolabel.storage.db.engine import make_engine, session_scope


def print_runs(settings: Settings, *, dataset: str | None, limit: int) -> None:
    """Print the most recent runs (newest first)."""
    prepare_database(settings)
    engine = make_engine(database_url(settings))
    try:
        with session_scope(engine) as session:
            rows = queries.list_label_runs(session, dataset=dataset, limit=limit)
    finally:
        engine.dispose()
    table = Table(title="label runs")
    columns = ("run", "dataset", "status", "done", "failed", "skipped", "annotations", "started")
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.dataset,
            r.status,
            str(r.images_done),
            str(r.images_failed),
            str(r.images_skipped),
            str(r.annotations),
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)
