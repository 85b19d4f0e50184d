"""`autolabel quality-report`: the quality report of a dataset (or one run) as an HTML page."""

import typer

from autolabel.flows.cli.boundary import parameter_errors
from autolabel.flows.cli.checks import prefect_for_flows
from autolabel.flows.errors import FlowError


class QualityParameterError(FlowError, ValueError):
    """A quality report option that does not validate."""


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def quality_report_command(
    dataset: str = typer.Option(..., help="Dataset name."),
    output: str = typer.Option(..., help="The HTML page: a local path, or a file:// or s3:// URL."),
    run: int | None = typer.Option(None, help="Only this label run's images and predictions."),
    samples: int = typer.Option(6, help="Images drawn with their masks (0 to 50)."),
    iou: float = typer.Option(
        0.5, help="Lowest mask IoU at which a prediction matches a reviewed label."
    ),
) -> None:
    """Write a quality report: per-category counts, score histograms, agreement with reviewed
    labels (precision, recall, mask IoU) and sample overlays, as one self-contained HTML page
    (and as a Prefect artifact)."""
    from autolabel.flows.quality_report import QualityRequest, quality_report

    with parameter_errors(QualityParameterError, subject="report"):
        request = QualityRequest(
            dataset=dataset, output=output, run_id=run, samples=samples, iou_threshold=iou
        )
    with prefect_for_flows():
        result = quality_report(request)
    typer.echo(
        f"wrote the quality report of {result.predictions} predictions in "
        f"{len(result.categories)} categories to {result.output}"
    )
    total = result.agreement_total
    if total is None:
        typer.echo("no reviewed images: no agreement with reviewed labels")
    else:
        typer.echo(
            f"{result.reviewed_images} reviewed images at mask IoU >= {result.iou_threshold:g}: "
            f"precision {_ratio(total.precision)}, recall {_ratio(total.recall)}, "
            f"mean mask IoU {_ratio(total.mean_iou)}"
        )
    for unreadable in result.unreadable:
        typer.echo(f"unreadable image: {unreadable.storage_key}: {unreadable.reason}", err=True)
