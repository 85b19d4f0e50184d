"""`autolabel ingest-sa1b` and `autolabel export-sa1b`: SA-1B data into the retraining loop."""

import os
from pathlib import Path

import typer

from autolabel.flows.cli.checks import prefect_for_flows


def ingest_sa1b(
    folder: Path = typer.Argument(..., help="Folder of SA-1B tar shards (sa_000000.tar, ...)."),
    to: str = typer.Option(..., "--to", help="Store URL (folder) the shards are copied to."),
) -> None:
    """Check and upload SA-1B shards, then announce them (event `autolabel.sa1b.landed`)."""
    from autolabel.flows.sa1b import ingest_sa1b_shards

    with prefect_for_flows():
        result = ingest_sa1b_shards(folder, to)
    for name, reason in result.skipped.items():
        typer.echo(f"skipped unreadable shard {name}: {reason}", err=True)
    typer.echo(
        f"uploaded {len(result.uploaded)} shards to {result.url} ({len(result.skipped)} skipped)"
    )
    if result.uploaded and not os.environ.get("PREFECT_API_URL"):
        typer.echo("no Prefect server configured (PREFECT_API_URL): no event emitted")


def export_sa1b(
    dataset: str = typer.Option(..., help="Dataset name."),
    output: str = typer.Option(..., help="Store URL (folder) for the shards."),
    run: int | None = typer.Option(None, help="Only this label run's annotations."),
    accepted_only: bool = typer.Option(
        False,
        "--accepted-only",
        help="Only annotations a reviewer accepted (`autolabel review mark --status accepted`).",
    ),
    images_per_shard: int = typer.Option(100, help="Images per tar shard."),
) -> None:
    """Write a dataset's annotations as SA-1B shards for retraining, and announce them."""
    from autolabel.flows.sa1b import Sa1bExportRequest, export_sa1b_shards

    request = Sa1bExportRequest(
        dataset=dataset,
        output=output,
        run_id=run,
        accepted_only=accepted_only,
        images_per_shard=images_per_shard,
    )
    with prefect_for_flows():
        result = export_sa1b_shards(request)
    typer.echo(
        f"wrote {len(result.shards)} shards ({result.images} images, {result.annotations} "
        f"annotations) to {result.url}"
    )
