"""The quality report as one self-contained HTML page: Plotly figures, tables and overlays.

plotly.js is embedded once, inline, in the page's head, and every figure is a `div` drawn by it,
so the page opens offline and from any store. Overlays are embedded as base64 JPEG. All text
that comes from data (dataset, category names, storage keys, reasons) is HTML-escaped, in the
tables and in the figures alike (Plotly reads a pseudo-HTML subset in labels and decodes
entities). The body's `data-figures` attribute says how many figures the page draws.

This is the one module that imports Plotly (untyped: `plotly.*` is in mypy's
ignore_missing_imports list).
"""

import base64
from html import escape
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from autolabel.tasks.quality.report_data import (
    AgreementRow,
    CategoryRow,
    QualityReport,
    ScoreField,
    UnreadableImage,
)

MAX_HISTOGRAM_CATEGORIES = 12  # the most frequent ones; the rest are summed as one trace
_FIELD_TITLES: dict[ScoreField, str] = {
    "score": "Detector score (GroundingDINO)",
    "predicted_iou": "Predicted IoU (EfficientViT-SAM)",
    "stability_score": "Stability score (EfficientViT-SAM)",
}
_STATUS_COLORS = {
    "accepted": "#2ca02c",
    "unreviewed": "#8c8c8c",
    "superseded": "#ff7f0e",
    "rejected": "#d62728",
}
_STATUS_NAMES = {"superseded": "corrected (superseded)"}
_COLORWAY: list[str] = list(qualitative.Plotly)
_CONFIG = {"displaylogo": False, "responsive": True}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1320px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 12px 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
tr.total td { font-weight: bold; background: #fafafa; }
.figure { margin: 8px 0 16px; } .note { color: #555; font-style: italic; }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; }
.samples figure { margin: 0; } .samples img { width: 100%; border: 1px solid #ccc; }
.samples figcaption { font-size: 0.85em; color: #444; word-break: break-all; }
"""


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": escape(title)},
        "template": "plotly_white",
        "height": 380,
        "margin": {"l": 60, "r": 20, "t": 60, "b": 80},
        "legend": {"orientation": "h", "y": -0.2},
        **extra,
    }


def counts_figure(rows: list[CategoryRow]) -> go.Figure:
    """Stacked bars: each category's predictions by review status."""
    names = [escape(r.category) for r in rows]
    figure = go.Figure(
        data=[
            go.Bar(
                name=_STATUS_NAMES.get(status, status),
                x=names,
                y=[getattr(r, status) for r in rows],
                marker_color=color,
            )
            for status, color in _STATUS_COLORS.items()
        ]
    )
    figure.update_layout(
        _layout("Predictions per category", barmode="stack", xaxis={"type": "category"})
    )
    return figure


def _ranked(by_category: dict[str, list[int]], bins: int) -> list[tuple[str, list[int]]]:
    """The most frequent categories, the rest summed as one entry."""
    ranked = sorted(by_category.items(), key=lambda item: -sum(item[1]))
    shown = ranked[:MAX_HISTOGRAM_CATEGORIES]
    rest = ranked[MAX_HISTOGRAM_CATEGORIES:]
    if rest:
        others = [sum(counts[i] for _, counts in rest) for i in range(bins)]
        shown.append((f"{len(rest)} other categories", others))
    return shown


def histograms_figure(histograms: dict[ScoreField, dict[str, list[int]]], bins: int) -> go.Figure:
    """One panel per score, each with overlaid per-category histograms over [0, 1] (pre-binned
    counts); a category keeps its colour and legend entry across the panels."""
    fields = list(histograms)
    figure = make_subplots(
        rows=1, cols=len(fields), subplot_titles=[_FIELD_TITLES[f] for f in fields]
    )
    centers = [(i + 0.5) / bins for i in range(bins)]
    colors: dict[str, str] = {}  # also: the categories that have their legend entry
    for column, field in enumerate(fields, start=1):
        for name, counts in _ranked(histograms[field], bins):
            first = name not in colors
            color = colors.setdefault(name, _COLORWAY[len(colors) % len(_COLORWAY)])
            figure.add_trace(
                go.Bar(
                    name=escape(name),
                    x=centers,
                    y=counts,
                    width=1.0 / bins,
                    opacity=0.6,
                    marker_color=color,
                    legendgroup=escape(name),
                    showlegend=first,
                ),
                row=1,
                col=column,
            )
        figure.update_xaxes(title_text=field, range=[0, 1], row=1, col=column)
    figure.update_yaxes(title_text="predictions", row=1, col=1)
    layout = _layout("Score histograms per category", barmode="overlay")
    layout["margin"] = {**layout["margin"], "t": 90}  # room for the panel titles
    figure.update_layout(layout)
    return figure


def agreement_figure(rows: list[AgreementRow]) -> go.Figure:
    """Grouped bars per category: precision, recall, F1 and mean matched mask IoU."""
    names = [escape(r.category) for r in rows]
    metrics = {"precision": "precision", "recall": "recall", "f1": "F1", "mean_iou": "mean IoU"}
    figure = go.Figure(
        data=[
            go.Bar(name=label, x=names, y=[getattr(r, key) for r in rows])
            for key, label in metrics.items()
        ]
    )
    figure.update_layout(
        _layout(
            "Agreement with reviewed labels",
            barmode="group",
            xaxis={"type": "category"},
            yaxis={"range": [0, 1.05]},
        )
    )
    return figure


def _figure_div(figure: go.Figure, div_id: str) -> str:
    html: str = pio.to_html(
        figure, full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG
    )
    return f'<div class="figure">{html}</div>'


def _table(header: list[str], rows: list[list[object]], total: list[object] | None = None) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "&ndash;"
        return f"{value:.3f}" if isinstance(value, float) else escape(str(value))

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    if total is not None:
        body += '<tr class="total">' + "".join(f"<td>{cell(v)}</td>" for v in total) + "</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_section(report: QualityReport, figures: list[str]) -> str:
    rows = report.result.categories
    figures.append(_figure_div(counts_figure(rows), "figure-counts"))
    header = ["category", "predictions", "unreviewed", "accepted", "rejected", "corrected"]
    table = _table(
        [*header, "reviewer labels"],
        [
            [
                r.category,
                r.predictions,
                r.unreviewed,
                r.accepted,
                r.rejected,
                r.superseded,
                r.review_labels,
            ]
            for r in rows
        ],
    )
    return f'<section id="counts"><h2>Predictions per category</h2>{figures[-1]}{table}</section>'


def _scores_section(report: QualityReport, figures: list[str]) -> str:
    title = "<h2>Score histograms</h2>"
    if not report.histograms:
        return (
            f'<section id="scores">{title}<p class="note">No prediction has a score.</p></section>'
        )
    figure = histograms_figure(report.histograms, report.bins)
    figures.append(_figure_div(figure, "figure-scores"))
    return f'<section id="scores">{title}{figures[-1]}</section>'


def _agreement_section(report: QualityReport, figures: list[str]) -> str:
    result = report.result
    title = "<h2>Agreement with reviewed labels</h2>"
    if result.agreement is None or result.agreement_total is None:
        note = (
            '<p class="note">No reviewed images in this report: agreement needs images covered '
            "by a review import (<code>autolabel import-review</code>).</p>"
        )
        return f'<section id="agreement">{title}{note}</section>'
    figures.append(_figure_div(agreement_figure(result.agreement), "figure-agreement"))
    explain = (
        f"<p>{result.reviewed_images} reviewed images; a prediction matches a reviewed label "
        f"of its category at mask IoU &ge; {result.iou_threshold:g}. Accepted predictions match "
        "themselves, rejected ones are false positives, labels no prediction matches are false "
        "negatives.</p>"
    )

    def values(r: AgreementRow) -> list[object]:
        return [r.category, r.tp, r.fp, r.fn, r.precision, r.recall, r.f1, r.mean_iou]

    table = _table(
        ["category", "TP", "FP", "FN", "precision", "recall", "F1", "mean mask IoU"],
        [values(r) for r in result.agreement],
        values(result.agreement_total),
    )
    return f'<section id="agreement">{title}{explain}{figures[-1]}{table}</section>'


def _unreadable_list(unreadable: list[UnreadableImage]) -> str:
    if not unreadable:
        return ""
    items = "".join(
        f"<li><code>{escape(u.storage_key)}</code>: {escape(u.reason)}</li>" for u in unreadable
    )
    return f'<h3>Images that could not be read</h3><ul class="unreadable">{items}</ul>'


def _samples_section(report: QualityReport) -> str:
    cards = "".join(
        "<figure>"
        f'<img alt="{escape(o.storage_key)}" '
        f'src="data:image/jpeg;base64,{base64.b64encode(o.jpeg).decode("ascii")}">'
        f"<figcaption>{escape(o.caption)}</figcaption></figure>"
        for o in report.overlays
    )
    body = f'<div class="samples">{cards}</div>' if cards else '<p class="note">No samples.</p>'
    unreadable = _unreadable_list(report.result.unreadable)
    return f'<section id="samples"><h2>Sample overlays</h2>{body}{unreadable}</section>'


def render_report_html(report: QualityReport) -> str:
    """The whole page, self-contained (plotly.js inline, overlays as data URLs)."""
    result = report.result
    figures: list[str] = []
    sections = [
        _counts_section(report, figures),
        _scores_section(report, figures),
        _agreement_section(report, figures),
        _samples_section(report),
    ]
    scope = "" if result.run_id is None else f", run {result.run_id}"
    title = escape(f"Quality report: {result.dataset}{scope}")
    meta = escape(
        f"Generated {report.generated_at}: {result.predictions} predictions in "
        f"{len(result.categories)} categories, {result.reviewed_images} reviewed images."
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f'<body data-figures="{len(figures)}"><h1>{title}</h1><p class="meta">{meta}</p>'
        f"{''.join(sections)}</body></html>\n"
    )
