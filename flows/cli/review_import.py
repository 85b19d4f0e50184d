"""`autolabel import-review`: a Label Studio, CVAT or FiftyOne export back into the database.

The import itself runs no flow (no Prefect API is started); with `--sa1b-output` the accepted
labels then go through the `export-sa1b` flow, which announces them to retraining.
"""

import typer

from autolabel.flows.cli.boundary import parameter_errors
from autolabel.flows.cli.checks import prefect_for_flows
from autolabel.flows.errors import FlowError


class ReviewImportParameterError(FlowError, ValueError):
    """A review import option that does not validate."""


def import_review_command(
    dataset: str = typer.Option(..., help="Dataset the review belongs to."),
    review_format: str = typer.Option(
        ...,
        "--format",
        help="label-studio (JSON export), cvat (COCO 1.0 export), cvat-xml (CVAT for images 1.1 "
        "XML) or fiftyone (COCO detection export of the reviewed field).",
    ),
    input_file: str = typer.Option(
        ..., "--input", help="The review file: local path, file:// or s3:// URL."
    ),
    reviewer: str | None = typer.Option(None, help="Reviewer recorded where the file has none."),
    same_iou: float = typer.Option(0.99, help="Mask IoU from which a kept object is unchanged."),
    match_iou: float = typer.Option(
        0.5, help="Mask IoU from which an object without our id is taken for a prediction."
    ),
    sa1b_output: str | None = typer.Option(
        None,
        help="Store URL (folder): write the dataset's accepted labels as SA-1B shards under "
        "<it>/review-<import id>/ and announce them to retraining (autolabel.sa1b.landed).",
    ),
) -> None:
    """Import a review: each prediction of a reviewed image accepted, corrected or rejected,
    each object a reviewer drew added, with history; the same file twice changes nothing."""
    from autolabel.flows.import_review import accepted_to_sa1b
    from autolabel.flows.resources import process_resources  # the database: lazily
    from autolabel.flows.settings import load_settings
    from autolabel.tasks.review.review_import import ReviewImportRequest, import_review

    with parameter_errors(ReviewImportParameterError, subject="import"):
        request = ReviewImportRequest(
            dataset=dataset,
            format=review_format,
            input=input_file,
            reviewer=reviewer,
            same_iou=same_iou,
            match_iou=match_iou,
        )
    result = import_review(request, process_resources(load_settings()))
    if result.already_imported:
        typer.echo(f"{result.source} was imported before (import {result.import_id}): no change")
    else:
        typer.echo(
            f"imported review {result.import_id} of {result.images} images: "
            f"{result.accepted} accepted, {result.corrected} corrected, {result.rejected} "
            f"rejected, {result.added} added, {result.unchanged} unchanged"
            + (f", {result.skipped_items} items skipped" if result.skipped_items else "")
        )
    if sa1b_output is not None:
        with prefect_for_flows():
            shards = accepted_to_sa1b(result, sa1b_output)
        if shards is None:
            typer.echo("no newly accepted labels: no SA-1B shards written")
        else:
            typer.echo(
                f"wrote {len(shards.shards)} SA-1B shards ({shards.annotations} accepted "
                f"labels) to {shards.url}"
            )
