"""The printed table of bench/storage_throughput.py's results (the JSON holds the same figures).

Columns: `rows`, wall `seconds`, and `per second` (rows/s; annotations/s for the COCO export).
CPU lines give client + PostgreSQL backend CPU seconds in the `seconds` column and rows per CPU
second in the last. The closing lines state the pipeline insert and the COCO export as ratios to
their same-run raw COPY baselines (bench/_storage_baselines.py), by wall time and by CPU seconds.
"""

import os
from typing import Any

Line = tuple[str, int | None, float | None, float | None]  # label, rows, seconds, per second
_CPU = "  same, CPU s (client + server backend), rows/CPU s"


def _format(line: Line) -> str:
    label, rows, seconds, per_s = line
    cells = (
        "" if rows is None else f"{rows:,}",
        "" if seconds is None else f"{seconds:.2f}",
        "" if per_s is None else f"{per_s:,.0f}",
    )
    return f"{label:<52}{cells[0]:>11}{cells[1]:>9}{cells[2]:>13}"


def _timed(label: str, figures: dict[str, Any]) -> list[Line]:
    """The wall-time line and the CPU line of one measurement."""
    cpu = figures["client_cpu_s"] + figures["server_cpu_s"]
    per_cpu = figures["rows"] / cpu if figures["server_cpu_s"] else None
    return [
        (label, figures["rows"], figures["seconds"], figures["rows"] / figures["seconds"]),
        (_CPU, None, cpu, per_cpu),
    ]


def _cpu_s(figures: dict[str, Any]) -> float:
    return float(figures["client_cpu_s"] + figures["server_cpu_s"])


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """Pipeline insert rows/s over raw COPY rows/s, export seconds over COPY-out seconds; the
    same with CPU seconds (client + backend), which a busy machine inflates less."""
    pipe, base = results["bulk_insert"], results["copy_in_baseline"]
    export, out = results["coco_export"], results["coco_export"]["baseline"]
    return {
        "insert_vs_copy_in": pipe["rows_per_s"] / base["rows_per_s"],
        "insert_vs_copy_in_cpu": _cpu_s(base) / _cpu_s(pipe),
        "export_vs_copy_out": export["seconds"] / out["seconds"],
        "export_vs_copy_out_cpu": _cpu_s(export) / _cpu_s(out),
    }


def table_lines(results: dict[str, Any]) -> list[str]:
    """The table, the ratio lines and the listing/decode rows, as printed."""
    pipe, base = results["bulk_insert"], results["copy_in_baseline"]
    upsert, orm = results["upsert_insert"], results["orm_add_all"]
    export, out, ratio = (
        results["coco_export"],
        results["coco_export"]["baseline"],
        results["ratios"],
    )
    export_rows = {**export, "rows": export["annotations"]}
    rss = f"COCO export, RLE (peak RSS {export['peak_rss_mib']:.0f} MiB)"
    lines: list[Line] = [
        *_timed("insert: write_image_batch (COPY, plain INSERT)", pipe),
        ("  retried batch (everything skipped)", None, None, pipe["retried_batch_rows_per_s"]),
        *_timed("  baseline: raw binary COPY, plain table", base),
        *_timed("insert: write_annotations (COPY, ON CONFLICT)", upsert),
        ("  retried batch (everything skipped)", None, None, upsert["retried_batch_rows_per_s"]),
        ("insert: ORM add_all", orm["rows"], orm["seconds"], orm["rows_per_s"]),
        *_timed(rss, export_rows),
        *_timed("  baseline: raw binary COPY-out (mean of 2)", out),
    ]
    loads = results["load_average"]
    quick = results["quick"]
    text = [
        f"{'QUICK mode: ' if quick else ''}{results['annotations_target']:,} annotations "
        f"({'the full run uses 1,000,000' if quick else 'full run'})",
        f"load average (1 min) on {os.cpu_count()} CPUs: start {loads['start'][0]:.1f}, "
        f"after inserts {pipe['load_average_1m']:.1f}, "
        f"after export {export['load_average_1m']:.1f}",
        f"{'case':<52}{'rows':>11}{'seconds':>9}{'per second':>13}",
        *map(_format, lines),
        f"insert {pipe['rows_per_s'] / 1e3:,.1f}k rows/s = {ratio['insert_vs_copy_in']:.2f}x "
        f"raw COPY {base['rows_per_s'] / 1e3:,.1f}k rows/s "
        f"(CPU seconds: {ratio['insert_vs_copy_in_cpu']:.2f}x)",
        f"export {export['seconds']:.2f} s = {ratio['export_vs_copy_out']:.1f}x "
        f"raw COPY-out {out['seconds']:.2f} s "
        f"(CPU seconds: {ratio['export_vs_copy_out_cpu']:.1f}x)",
    ]
    for row in results["io"]:
        value = row.get("value")
        shown = f"{value:,.1f} {row.get('unit', '')}" if isinstance(value, float | int) else ""
        text.append(f"{str(row.get('case', ''))[:63]:<63}{shown:>22}")
    return text
