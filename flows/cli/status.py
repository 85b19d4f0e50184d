"""`autolabel runs`: recent label runs, their status (with the reason) and counts."""

from rich.console import Console
from rich.table import Table

from autolabel.flows.run_listing import recent_runs
from autolabel.flows.settings import Settings


def print_runs(settings: Settings, *, dataset: str | None, limit: int) -> None:
    """Print the most recent runs (newest first); dead `running` runs are marked crashed first."""
    rows = recent_runs(settings, dataset=dataset, limit=limit)
    table = Table(title="label runs")
    columns = (
        "run",
        "dataset",
        "status",
        "done",
        "failed",
        "skipped",
        "annotations",
        "started",
        "detector runtime",
        "segmenter runtime",
    )
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
            r.runtime_names("detector"),
            r.runtime_names("segmenter"),
        )
    console = Console()
    console.print(table)
    for r in rows:
        if r.status_reason:
            console.print(f"run {r.id} {r.status}: {r.status_reason}", highlight=False)
