"""`autolabel sample-review`: the images most worth reviewing within a budget (uncertainty
sampling, `docs/sampling.md`), saved as JSON and optionally exported for review at once.

Like `export-review`, it reads the database (and writes files) and runs no flow, so it starts no
Prefect API; the flow `sample-for-review` (`autolabel.flows.sample_review`) runs the same core.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError

from autolabel.flows.cli.boundary import parameter_errors, validation_line
from autolabel.flows.cli.review_export import report_export
from autolabel.flows.errors import FlowError

if TYPE_CHECKING:
    from autolabel.tasks.sampling.uncertainty import SignalWeights


class SampleReviewParameterError(FlowError, ValueError):
    """A sampling option that does not validate."""


def _weights(text: str | None) -> "SignalWeights":
    from autolabel.tasks.sampling.uncertainty import SignalWeights

    try:
        return SignalWeights.parse(text) if text else SignalWeights()
    except ValidationError as exc:
        message = validation_line(exc, subject="sample", within=("weights",))
        raise SampleReviewParameterError(message) from None
    except ValueError as exc:  # not name=value pairs
        raise SampleReviewParameterError(str(exc)) from None


def sample_review_command(
    dataset: str = typer.Option(..., help="Dataset name."),
    budget: int = typer.Option(..., help="How many images (or annotations, see --unit) to choose."),
    run: int | None = typer.Option(None, help="Only this label run's images and annotations."),
    unit: str = typer.Option(
        "images",
        help="What --budget counts: images, or annotations (whole images are taken in score "
        "order while their annotations fit).",
    ),
    weights: str | None = typer.Option(
        None,
        help="Signal weights, e.g. 'predicted_iou=2,rarity=0' (signals: predicted_iou, "
        "stability, detector_score, box_mask, rarity; default 1 each; 0 turns one off).",
    ),
    top_k: int = typer.Option(1, help="Image score: mean of its k most uncertain annotations."),
    score_margin: float = typer.Option(
        0.1, help="Detector scores within this of their threshold count as uncertain."
    ),
    min_per_category: int = typer.Option(
        0, help="Reserve this many images for each category, rarest first."
    ),
    include_reviewed: bool = typer.Option(
        False, "--include-reviewed", help="Also choose images a reviewer already decided on."
    ),
    output: str | None = typer.Option(
        None,
        help="Write the selection as JSON to this file: local path, file:// or s3:// URL (for "
        "`export-review --images-from`).",
    ),
    export_format: str | None = typer.Option(
        None, help="Also export the chosen images for review: label-studio, cvat or fiftyone."
    ),
    export_output: str | None = typer.Option(
        None, help="Folder of that export: local path, file:// or s3:// URL."
    ),
    url_mode: str = typer.Option("presigned", help="label-studio: presigned or s3 image URLs."),
    local_files_root: Path | None = typer.Option(
        None, help="label-studio: the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT."
    ),
    with_images: bool = typer.Option(
        False, "--with-images", help="cvat, fiftyone: copy the images into the export."
    ),
) -> None:
    """Choose the images most worth reviewing (low predicted IoU or stability, detector score
    near its threshold, box and mask disagreeing, rare category) within a budget."""
    from autolabel.flows.resources import process_resources  # the database and stores: lazily
    from autolabel.flows.settings import load_settings
    from autolabel.tasks.export.review_export import ReviewExportRequest
    from autolabel.tasks.sampling.review_sample import (
        SampleRequest,
        export_selection,
        sample_for_review,
        save_selection,
    )
    from autolabel.tasks.sampling.uncertainty import SamplingPolicy

    if (export_format is None) != (export_output is None):
        raise SampleReviewParameterError("--export-format and --export-output go together")
    with parameter_errors(SampleReviewParameterError, subject="sample"):
        policy = SamplingPolicy(
            budget=budget,
            unit=unit,
            weights=_weights(weights),
            top_k=top_k,
            score_margin=score_margin,
            min_per_category=min_per_category,
        )
        request = SampleRequest(
            dataset=dataset, run_id=run, include_reviewed=include_reviewed, policy=policy
        )
        export = None
        if export_format is not None and export_output is not None:
            export = ReviewExportRequest(
                dataset=dataset,
                format=export_format,
                output=export_output,
                run_id=run,
                url_mode=url_mode,
                local_files_root=str(local_files_root) if local_files_root else None,
                with_images=with_images,
            )
    resources = process_resources(load_settings())
    selection = sample_for_review(request, resources)
    typer.echo(
        f"chose {len(selection.chosen)} of {selection.scored_images} images of dataset "
        f"{dataset!r} ({selection.budget_used} of {budget} {policy.unit})"
    )
    for image in selection.chosen:
        typer.echo(
            f"{image.score:.3f}  {image.driver:<14}  {image.picked_for:<12}  {image.storage_key}"
        )
    if output is not None:
        typer.echo(f"selection: {save_selection(selection, output, resources)}")
    if export is not None:
        report_export(export_selection(selection, export, resources))
