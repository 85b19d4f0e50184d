"""`autolabel tune-thresholds` and `autolabel compare-prompts`: the review loop's feedback into
labeling (see docs/tuning.md)."""

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from autolabel.flows.cli.boundary import parameter_errors
from autolabel.flows.cli.checks import prefect_for_flows
from autolabel.flows.errors import FlowError

if TYPE_CHECKING:
    from autolabel.tasks.tuning.prompt_compare import PromptComparison
    from autolabel.tasks.tuning.thresholds import TuningReport


class TuningParameterError(FlowError, ValueError):
    """A tuning or prompt-comparison option that does not validate."""


def _write_json(path: Path | None, result: BaseModel) -> None:
    if path is None:
        return
    try:
        path.write_text(result.model_dump_json(indent=2) + "\n")
    except OSError as exc:
        raise TuningParameterError(f"--json: cannot write {path}: {exc.strerror}") from exc
    typer.echo(f"wrote {path}")


def print_report(report: "TuningReport") -> None:
    """The before/after table of every category."""
    table = Table(
        title=f"thresholds of {report.dataset!r} ({report.metric_name}, {report.images} reviewed "
        f"images, run {report.run_id}'s job)"
    )
    for column in ("category", "labels", "before box/text", "TP/FP/FN", report.metric):
        table.add_column(column, justify="left" if column == "category" else "right")
    for column in ("after box/text", "TP/FP/FN", report.metric, "note"):
        table.add_column(column, justify="left" if column == "note" else "right")
    for c in report.categories:
        b, a = c.before, c.after
        table.add_row(
            c.category,
            str(c.labels),
            f"{c.before_thresholds.box:.2f}/{c.before_thresholds.text:.2f}",
            f"{b.tp}/{b.fp}/{b.fn}",
            f"{b.value(report.metric):.3f}",
            f"{c.after_thresholds.box:.2f}/{c.after_thresholds.text:.2f}",
            f"{a.tp}/{a.fp}/{a.fn}",
            f"{a.value(report.metric):.3f}",
            c.note or "",
        )
    Console().print(table)
    changed = sum(c.changed for c in report.categories)
    if report.skipped:
        typer.echo(f"reviewed images not scored, by reason: {report.skipped}")
    if report.stored and changed:
        typer.echo(f"stored tuned thresholds of {changed} categories; later runs use them")
    elif report.stored:
        typer.echo("no category's thresholds changed; nothing stored")
    else:
        typer.echo(f"dry run: {changed} categories would change; nothing stored")


def print_comparison(comparison: "PromptComparison") -> None:
    """The phrasings, best first."""
    c = comparison
    table = Table(
        title=f"phrasings of {c.category!r} in {c.dataset!r} ({c.images} reviewed images, "
        f"{c.labels} labels; box {c.thresholds.box:.2f}, text {c.thresholds.text:.2f}; "
        f"{c.match_by} IoU >= {c.iou_threshold:g})"
    )
    table.add_column("rank", justify="right")
    table.add_column("phrasing")
    best = f"best {c.metric}"
    for column in ("precision", "recall", "F1", "AP", "mean IoU", "best box/text", best):
        table.add_column(column, justify="right")
    for rank, r in enumerate(c.results, start=1):
        s = r.score
        table.add_row(
            str(rank),
            r.phrasing,
            f"{s.precision:.3f}",
            f"{s.recall:.3f}",
            f"{s.f1:.3f}",
            f"{s.ap:.3f}",
            "-" if s.mean_iou is None else f"{s.mean_iou:.3f}",
            f"{r.best_thresholds.box:.2f}/{r.best_thresholds.text:.2f}",
            f"{r.best_score.value(c.metric):.3f}",
        )
    Console().print(table)
    if c.skipped:
        typer.echo(f"reviewed images not scored, by reason: {c.skipped}")
    typer.echo(f"best: {c.best.phrasing!r}")


def tune_thresholds_command(
    dataset: str = typer.Option(..., help="Dataset name."),
    metric: str = typer.Option("f1", help="f1 (F1 at --iou) or ap (AP at --iou)."),
    iou: float = typer.Option(0.5, help="Least IoU for a detection to match a reviewed label."),
    sample: int | None = typer.Option(None, help="Most reviewed images used (default: all)."),
    match_by: str = typer.Option("mask", help="mask (mask IoU) or box (box IoU, no segmenter)."),
    run: int | None = typer.Option(
        None, help="Label run whose job is re-run (default: the latest that ran prompts)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report here."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; store nothing."),
) -> None:
    """Tune per-category detector thresholds on the dataset's reviewed images; later label runs
    of the dataset use them by default."""
    from autolabel.flows.tune_thresholds import TuneRequest, tune_thresholds

    with parameter_errors(TuningParameterError, subject="request"):
        request = TuneRequest(
            dataset=dataset,
            metric=metric,
            iou_threshold=iou,
            sample=sample,
            match_by=match_by,
            run_id=run,
            dry_run=dry_run,
        )
    with prefect_for_flows():
        report = tune_thresholds(request)
    print_report(report)
    _write_json(json_path, report)


def compare_prompts_command(
    dataset: str = typer.Option(..., help="Dataset name."),
    category: str = typer.Option(..., help="The category whose phrasings are compared."),
    phrasing: list[str] = typer.Option(..., help="A phrasing of the category. Repeatable."),
    sample: int | None = typer.Option(None, help="Most reviewed images used (default: all)."),
    iou: float = typer.Option(0.5, help="Least IoU for a detection to match a reviewed label."),
    metric: str = typer.Option("f1", help="Rank by f1 or ap at the current thresholds."),
    match_by: str = typer.Option("mask", help="mask (mask IoU) or box (box IoU, no segmenter)."),
    run: int | None = typer.Option(
        None, help="Label run whose job is re-run (default: the latest that ran prompts)."
    ),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the ranking here."),
) -> None:
    """Run alternative phrasings of a category on the reviewed images and rank them by how well
    they recover the reviewed labels."""
    from autolabel.flows.compare_prompts import CompareRequest, compare_prompts

    with parameter_errors(TuningParameterError, subject="request"):
        request = CompareRequest(
            dataset=dataset,
            category=category,
            phrasings=phrasing,
            sample=sample,
            iou_threshold=iou,
            metric=metric,
            match_by=match_by,
            run_id=run,
        )
    with prefect_for_flows():
        comparison = compare_prompts(request)
    print_comparison(comparison)
    _write_json(json_path, comparison)
