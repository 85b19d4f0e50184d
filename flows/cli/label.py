"""`autolabel label`, `autolabel export` and `autolabel runs`."""

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autolabel.flows.cli.boundary import parameter_errors
from autolabel.flows.cli.checks import prefect_for_flows
from autolabel.flows.errors import FlowError
from autolabel.flows.settings import load_settings
from autolabel.tasks.labeling.progress import reporting_to

if TYPE_CHECKING:  # modules that import the models (torch): imported by the commands that run them
    from autolabel.tasks.labeling.dry_run import JobPlan
    from autolabel.tasks.labeling.job import LabelJob, RunSummary

console = Console(stderr=True)


class JobParameterError(FlowError, ValueError):
    """A labeling or export parameter that does not validate."""


def parse_synonyms(values: list[str]) -> dict[str, list[str]]:
    """`["car=automobile,sedan", "person=pedestrian"]` -> {"car": [...], "person": [...]}."""
    table: dict[str, list[str]] = {}
    for value in values:
        category, sep, phrases = value.partition("=")
        if not sep or not category.strip() or not phrases.strip():
            raise JobParameterError(
                f"--synonym: expected CATEGORY=PHRASE[,PHRASE...], got {value!r}"
            )
        table.setdefault(category.strip(), []).extend(
            p.strip() for p in phrases.split(",") if p.strip()
        )
    return table


class TerminalProgress:
    """A rich progress bar fed by the labeling pipeline of this process.

    The bar appears once the run knows how many images it will label, so a job that fails
    before (bad source, weights, busy dataset) prints its one-line error alone.
    """

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("labeling", total=None)
        self.failed = 0

    def planned(self, total_images: int) -> None:
        self._progress.update(self._task, total=total_images)
        self._progress.start()

    def written(self, images_done: int, images_failed: int) -> None:
        self.failed += images_failed
        self._progress.update(
            self._task,
            advance=images_done + images_failed,
            description=f"labeling ({self.failed} failed)",
        )


def print_summary(summary: "RunSummary") -> None:
    table = Table(title=f"label run {summary.run_id} ({summary.dataset}): {summary.status}")
    for column in ("images done", "failed", "skipped", "annotations", "images/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.images_done),
        str(summary.images_failed),
        str(summary.images_skipped),
        str(summary.annotations),
        f"{summary.images_per_second:.2f}",
    )
    Console().print(table)
    if summary.annotations_per_category:
        per = Table("category", "annotations")
        for name, n in sorted(summary.annotations_per_category.items()):
            per.add_row(name, str(n))
        Console().print(per)
    if summary.failures:
        Console().print(f"failed images by reason: {summary.failures}")


def print_plan(job: "LabelJob", plan: "JobPlan") -> None:
    """The dry run's table: images listed, already done, to label, and the estimate."""
    table = Table(title=f"dry run: {job.source} -> dataset {job.dataset!r}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("images listed", str(plan.listed))
    table.add_row("already done (would be skipped)", str(plan.already_done))
    table.add_row("to label", str(plan.to_label))
    table.add_row("categories", str(plan.categories))
    table.add_row("detector passes per image", str(plan.detector_passes))
    for model, runtime in plan.runtimes.items():
        table.add_row(f"{model} runtime (this machine)", runtime)
    table.add_row("measured seconds per image (models only)", f"{plan.seconds_per_image:.3f}")
    table.add_row("estimated time", f"{plan.estimated_seconds / 60:.1f} min")
    table.add_row("work key", plan.work_key[:16])
    Console().print(table)


def run_job(job: "LabelJob") -> "RunSummary":
    """Run the labeling flow in this process with a terminal progress bar."""
    from autolabel.flows.label_dataset import autolabel_dataset

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=console, transient=False)
    try:
        with prefect_for_flows(), reporting_to(TerminalProgress(bar)):
            summary: RunSummary = autolabel_dataset(job)
    finally:
        bar.stop()
    return summary


def label(
    source: str = typer.Option(..., help="Images: s3://bucket/prefix/ or file:///folder."),
    dataset: str = typer.Option(..., help="Dataset name in the database."),
    prompts: str = typer.Option("", help='Categories, e.g. "person . forklift . pallet".'),
    synonym: list[str] = typer.Option(
        [], help="Extra phrases for a category: CATEGORY=PHRASE[,PHRASE]. Repeatable."
    ),
    pattern: str | None = typer.Option(None, help="Glob on keys below the source."),
    manifest: str | None = typer.Option(None, help="URL of a list of keys or URLs to label."),
    allow_root: list[str] = typer.Option(
        [],
        help="A store URL besides --source that --manifest entries may name. Repeatable "
        "(a manifest naming any other place is refused).",
    ),
    boxes_from: str | None = typer.Option(
        None, help="COCO JSON URL whose boxes are segmented instead of running the detector."
    ),
    detector: str | None = typer.Option(None, help="Detector model (default: settings)."),
    segmenter: str | None = typer.Option(None, help="Segmenter model (default: settings)."),
    segmenter_backend: str | None = typer.Option(
        None, help="auto, torch, onnxruntime, openvino or tensorrt (default: settings)."
    ),
    segmenter_precision: str | None = typer.Option(
        None, help="auto, fp32, bf16 or fp16 (default: settings)."
    ),
    detector_backend: str | None = typer.Option(
        None, help="auto, torch, onnxruntime or openvino (default: settings)."
    ),
    detector_precision: str | None = typer.Option(
        None, help="auto, fp32, bf16 or fp16 (default: settings)."
    ),
    box_threshold: float = typer.Option(0.35, help="Minimum box confidence."),
    text_threshold: float = typer.Option(0.25, help="Minimum matched-phrase probability."),
    nms_iou: float = typer.Option(0.5, help="Per-category NMS IoU."),
    duplicate_policy: str = typer.Option("keep_best", help="keep_best or keep_both."),
    max_detections: int = typer.Option(100, help="Most boxes per image."),
    shard_size: int = typer.Option(256, help="Images per shard task."),
    batch_size: int = typer.Option(8, help="Images per device batch."),
    max_gpus: int | None = typer.Option(
        None, help="Most GPUs (shard runs at once on a work pool) the job may use."
    ),
    max_failure_fraction: float = typer.Option(0.5, help="Abort above this failed fraction."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Retry images that failed before (default: skip them)."
    ),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Random model weights (smoke runs: labels are noise)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count images, show what would be skipped, estimate time."
    ),
    no_tuned_thresholds: bool = typer.Option(
        False,
        "--no-tuned-thresholds",
        help="Ignore the dataset's tuned per-category thresholds (autolabel tune-thresholds).",
    ),
) -> None:
    """Label images from a bucket with text prompts into a dataset."""
    from autolabel.tasks.labeling.job import LabelJob

    settings = load_settings()
    with parameter_errors(JobParameterError, subject="job"):
        job = LabelJob.model_validate(
            {
                "source": source,
                "dataset": dataset,
                "prompts": prompts,  # a caption string is split into names
                "synonyms": parse_synonyms(synonym),
                "pattern": pattern,
                "manifest": manifest,
                "allowed_roots": allow_root,
                "boxes_from": boxes_from,
                "detector": detector or settings.models.detector,
                "segmenter": segmenter or settings.models.segmenter,
                "segmenter_backend": segmenter_backend or settings.models.segmenter_backend,
                "segmenter_precision": segmenter_precision or settings.models.segmenter_precision,
                "detector_backend": detector_backend or settings.models.detector_backend,
                "detector_precision": detector_precision or settings.models.detector_precision,
                "thresholds": {
                    "box_threshold": box_threshold,
                    "text_threshold": text_threshold,
                    "nms_iou": nms_iou,
                    "duplicate_policy": duplicate_policy,
                    "max_detections": max_detections,
                },
                "shard_size": shard_size,
                "batch_size": batch_size,
                "max_gpus": max_gpus,
                "max_failure_fraction": max_failure_fraction,
                "retry_failed": retry_failed,
                "random_weights": random_weights,
                "tuned_thresholds": not no_tuned_thresholds,
            }
        )
    if dry_run:
        from autolabel.flows.label_dataset import plan_label_job

        print_plan(job, plan_label_job(job))
        return
    print_summary(run_job(job))


def export(
    dataset: str = typer.Option(..., help="Dataset name."),
    output: str = typer.Option(..., help="Local path or s3:// / file:// URL of the JSON."),
    run: int | None = typer.Option(None, help="Only this label run's annotations."),
    segmentation: str = typer.Option("rle", help="rle or polygon."),
    overlays: int = typer.Option(8, help="Images rendered as PNG overlays beside the export."),
) -> None:
    """Export a dataset (or one run) as COCO instances JSON."""
    from autolabel.flows.export_coco import ExportRequest, export_coco

    with parameter_errors(JobParameterError, subject="job"):
        request = ExportRequest(
            dataset=dataset,
            output=output,
            run_id=run,
            segmentation=segmentation,
            overlays=overlays,
        )
    with prefect_for_flows():
        result = export_coco(request)
    typer.echo(
        f"wrote {result.annotations} annotations of {result.images} images to {result.output}"
    )
    for overlay in result.overlay_urls:
        typer.echo(f"overlay: {overlay}")


def runs(
    dataset: str | None = typer.Option(None, help="Only runs of this dataset."),
    limit: int = typer.Option(20, help="Most recent runs to show."),
) -> None:
    """List label runs with their status and counts."""
    from autolabel.flows.cli.status import print_runs

    print_runs(load_settings(), dataset=dataset, limit=limit)
