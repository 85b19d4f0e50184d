"""The quality report's tables as Markdown and as rows, for Prefect artifacts and terminals.

Category names are data: in Markdown they are HTML-escaped and their `|` and line breaks
neutralised, so a name can neither break the table nor inject markup.
"""

import re
from html import escape
from pathlib import Path

from autolabel.storage.urls import is_url
from autolabel.tasks.quality.report_data import AgreementRow, QualityResult


def _md(text: str) -> str:
    return " ".join(escape(text, quote=False).replace("|", "\\|").split())


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def page_link(output: str) -> str:
    """A link to the written page: the URL as it is, or a local path as a `file://` URL."""
    return output if is_url(output) else Path(output).resolve().as_uri()


def artifact_key(result: QualityResult) -> str:
    """The artifact key of a report: one per dataset id, or per run (Prefect keys allow only
    lowercase letters, digits and dashes)."""
    scope = f"run-{result.run_id}" if result.run_id is not None else f"dataset-{result.dataset_id}"
    return re.sub(r"[^a-z0-9-]", "-", f"quality-report-{scope}")


def _agreement_line(row: AgreementRow) -> str:
    return (
        f"| {_md(row.category)} | {row.tp} | {row.fp} | {row.fn} | {_ratio(row.precision)} "
        f"| {_ratio(row.recall)} | {_ratio(row.f1)} | {_ratio(row.mean_iou)} |"
    )


def summary_markdown(result: QualityResult) -> str:
    """Counts and agreement tables, with a link to the HTML page."""
    scope = "" if result.run_id is None else f", run {result.run_id}"
    lines = [
        f"# Quality report: {_md(result.dataset)}{scope}",
        "",
        f"[Open the report with its plots and overlays]({page_link(result.output)})",
        "",
        f"{result.predictions} predictions, {result.reviewed_images} reviewed images, "
        f"{result.samples} sample overlays.",
        "",
        "| category | predictions | unreviewed | accepted | rejected | corrected "
        "| reviewer labels |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {_md(r.category)} | {r.predictions} | {r.unreviewed} | {r.accepted} | {r.rejected} "
        f"| {r.superseded} | {r.review_labels} |"
        for r in result.categories
    ]
    lines.append("")
    if result.agreement is None or result.agreement_total is None:
        lines.append("No reviewed images: no agreement with reviewed labels.")
    else:
        lines += [
            f"Agreement with reviewed labels at mask IoU >= {result.iou_threshold:g}:",
            "",
            "| category | TP | FP | FN | precision | recall | F1 | mean mask IoU |",
            "|---|---|---|---|---|---|---|---|",
            *(_agreement_line(r) for r in result.agreement),
            _agreement_line(result.agreement_total),
        ]
    if result.unreadable:
        lines += ["", "Images that could not be read:", ""]
        lines += [f"- {_md(u.storage_key)}: {_md(u.reason)}" for u in result.unreadable]
    return "\n".join(lines)


def summary_table(result: QualityResult) -> list[dict[str, str | int | float | None]]:
    """One row per category: counts, and agreement where there are reviewed images."""
    agreement = {r.category: r for r in result.agreement or []}
    rows: list[dict[str, str | int | float | None]] = []
    for counts in result.categories:
        row: dict[str, str | int | float | None] = dict(counts.model_dump())
        match = agreement.get(counts.category)
        if match is not None:
            row.update(match.model_dump(exclude={"category"}))
        rows.append(row)
    return rows
