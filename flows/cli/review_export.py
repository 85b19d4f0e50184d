"""`autolabel export-review`: a dataset (or run) for review in Label Studio, CVAT or FiftyOne.

It reads the database and the image stores and writes files; it runs no flow, so it starts no
Prefect API (the `export_review` task in `autolabel.tasks.export.export_tasks` wraps the same
core for flows).
"""

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from autolabel.flows.cli.boundary import parameter_errors
from autolabel.flows.errors import FlowError

if TYPE_CHECKING:
    from autolabel.tasks.export.review_export import ReviewExportResult


class ReviewExportParameterError(FlowError, ValueError):
    """A review export option that does not validate."""


def export_review_command(
    dataset: str = typer.Option(..., help="Dataset name."),
    export_format: str = typer.Option(
        ..., "--format", help="label-studio, cvat (COCO 1.0) or fiftyone (COCO detection)."
    ),
    output: str = typer.Option(..., help="Output folder: local path, file:// or s3:// URL."),
    run: int | None = typer.Option(None, help="Only this label run's images and annotations."),
    min_score: float | None = typer.Option(None, help="Leave out annotations scored below this."),
    url_mode: str = typer.Option(
        "presigned",
        help="label-studio: s3:// images as presigned HTTPS URLs (presigned) or as s3:// URLs "
        "for a bucket connected as Label Studio cloud storage (s3).",
    ),
    regions: str = typer.Option(
        "brush",
        help="label-studio: regions as brush masks (exact) or polygon outlines (holes filled, "
        "one region per part).",
    ),
    expiry_seconds: int = typer.Option(
        86_400, help="label-studio: lifetime of presigned URLs (at most 604800, 7 days)."
    ),
    local_files_root: Path | None = typer.Option(
        None,
        help="label-studio: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; file:// images "
        "get /data/local-files/?d=<path below it> URLs.",
    ),
    with_images: bool = typer.Option(
        False, "--with-images", help="cvat, fiftyone: copy the images into the export."
    ),
    image_root: str | None = typer.Option(
        None, help="Store URL the file_names are relative to (default: the dataset's source)."
    ),
    images_from: str | None = typer.Option(
        None,
        help="Only the images of this selection (`autolabel sample-review --output`); its run "
        "unless --run is given.",
    ),
) -> None:
    """Export a dataset (or one run) for review: Label Studio tasks with brush predictions,
    CVAT-importable COCO 1.0, or a FiftyOne-loadable COCO detection dataset."""
    from autolabel.flows.resources import process_resources  # the database and stores: lazily
    from autolabel.flows.settings import load_settings
    from autolabel.tasks.export.review_export import ReviewExportRequest, export_review
    from autolabel.tasks.sampling.review_sample import load_selection, restrict_to_selection

    with parameter_errors(ReviewExportParameterError, subject="export"):
        request = ReviewExportRequest(
            dataset=dataset,
            format=export_format,
            output=output,
            run_id=run,
            min_score=min_score,
            url_mode=url_mode,
            regions=regions,
            expiry_seconds=expiry_seconds,
            local_files_root=str(local_files_root) if local_files_root else None,
            with_images=with_images,
            image_root=image_root,
        )
    resources = process_resources(load_settings())
    if images_from is not None:
        request = restrict_to_selection(request, load_selection(images_from, resources))
    report_export(export_review(request, resources))


def report_export(result: "ReviewExportResult") -> None:
    """Print what a review export wrote."""
    typer.echo(
        f"wrote {result.annotations} annotations of {result.images} images for "
        f"{result.format} to {result.output}"
    )
    for name in result.files:
        typer.echo(f"file: {name}")
    if result.fitted:
        typer.echo(f"fitted {result.fitted} masks or boxes to their image (stored ones unchanged)")
    if result.images_copied or result.images_missing:
        typer.echo(f"copied {result.images_copied} images; {len(result.images_missing)} missing")
    for missing in result.images_missing:
        typer.echo(f"missing image: {missing}", err=True)
    if result.urls_expire_at:
        typer.echo(f"presigned image URLs expire at {result.urls_expire_at}")
