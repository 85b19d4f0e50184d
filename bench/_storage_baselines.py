"""Raw binary COPY baselines for bench/storage_throughput.py (same run, same rows, same server).

The pipeline's insert and the COCO export are reported as ratios to what PostgreSQL and psycopg
do with no pipeline code around them, so that a result survives a change of machine:

- `CopyInBaseline`: `COPY <plain table> FROM STDIN (FORMAT BINARY)` of the rows that
  `write_image_batch` writes (built by the pipeline's own row builder, `bulk._row`, with its
  binary COPY types), into a table made by `CREATE TABLE ... AS SELECT <the same columns> FROM
  annotations WITH NO DATA` (same column types; no key, index, identity or constraint). Rows are
  built before the clock starts; each batch is one transaction, as in the pipeline.
- `copy_out_baseline`: `COPY (<the export's own image and annotation SELECTs>) TO STDOUT (FORMAT
  BINARY)`, read block by block with `Copy.read()` and discarded (bytes are counted).

Each figure carries wall seconds, CPU seconds of this process and of the PostgreSQL backend
(from /proc), and the 1-minute load average.

The private names read here (`bulk._row`, `bulk._COLUMNS`, `bulk._COPY_TYPES`,
`coco_export._image_query`, `coco_export._annotation_query`) are read on purpose, so that the
baselines move the very rows and SELECTs the pipeline does; a rename there fails here at import.
"""

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Select
from sqlalchemy.dialects import postgresql

from autolabel.storage.db import bulk, coco_export
from autolabel.storage.db.records import AnnotationIn
from autolabel.storage.db.tables import ReviewStatus

BASELINE_TABLE = "bench_copy_baseline"
_COLUMNS = (*bulk._COLUMNS, "review_status")
_COPY_TYPES = (*bulk._COPY_TYPES, "text")
_UNREVIEWED = (ReviewStatus.UNREVIEWED.value,)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` (0.0 if /proc is unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def libpq_url(url: str) -> str:
    """The plain `postgresql://` URL psycopg takes (drops a SQLAlchemy `+driver`)."""
    return url.replace("+psycopg", "")


class CpuClock:
    """Sums wall seconds, this process's CPU seconds and a PostgreSQL backend's CPU seconds over
    timed sections (the backend is named per call: a pooled session may change connection)."""

    def __init__(self) -> None:
        self.seconds, self.client_cpu_s, self.server_cpu_s = 0.0, 0.0, 0.0

    def timed(self, work: Callable[[], int], *, backend_pid: int) -> int:
        """Run `work` (returns a row count) and add its times."""
        server0 = process_cpu_s(backend_pid)
        t0, c0 = time.perf_counter(), time.process_time()
        count = work()
        self.seconds += time.perf_counter() - t0
        self.client_cpu_s += time.process_time() - c0
        self.server_cpu_s += process_cpu_s(backend_pid) - server0
        return count

    def figures(self, rows: int) -> dict[str, Any]:
        """Rows, seconds, rows/s, CPU seconds, rows per CPU second, 1-minute load average."""
        cpu = self.client_cpu_s + self.server_cpu_s
        return {
            "rows": rows,
            "seconds": self.seconds,
            "rows_per_s": rows / self.seconds if self.seconds else None,
            "client_cpu_s": self.client_cpu_s,
            "server_cpu_s": self.server_cpu_s,
            "rows_per_cpu_s": rows / cpu if self.server_cpu_s else None,
            "load_average_1m": os.getloadavg()[0],
        }


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    if row is None:
        raise RuntimeError("expected one row from pg_backend_pid(), got none")
    return int(row[0])


class CopyInBaseline:
    """Binary COPY of the pipeline's annotation rows into a plain table; one per benchmark run.

    Lifecycle: `open` connects (a connection of its own, not autocommit) and creates the table,
    `write` copies one batch (its own transaction), `figures` sums them up, `close` (or leaving
    the `with` block) drops the table and disconnects.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, dataset_id: int, work_key: str) -> None:
        self._conn, self._dataset_id, self._work_key = conn, dataset_id, work_key
        self._pid, self._clock, self.rows = _backend_pid(conn), CpuClock(), 0
        conn.execute(
            f"CREATE TABLE {BASELINE_TABLE} AS SELECT {', '.join(_COLUMNS)} "  # noqa: S608
            "FROM annotations WITH NO DATA"
        )
        conn.commit()

    @classmethod
    def open(cls, url: str, *, dataset_id: int, work_key: str) -> "CopyInBaseline":
        """Connect to the benchmark database and create the baseline table."""
        conn = psycopg.connect(libpq_url(url))
        return cls(conn, dataset_id=dataset_id, work_key=work_key)

    def write(self, annotations: Sequence[AnnotationIn]) -> int:
        """COPY one batch (built first, untimed) and commit it; returns the rows copied."""
        rows = [
            bulk._row(a, self._dataset_id, None, self._work_key) + _UNREVIEWED for a in annotations
        ]

        def copy() -> int:
            with self._conn.cursor() as cur:
                sql = f"COPY {BASELINE_TABLE} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                with cur.copy(sql) as cp:
                    cp.set_types(list(_COPY_TYPES))
                    for row in rows:
                        cp.write_row(row)
            self._conn.commit()
            return len(rows)

        copied = self._clock.timed(copy, backend_pid=self._pid)
        self.rows += copied
        return copied

    def figures(self) -> dict[str, Any]:
        """Rows, wall/CPU seconds, rows/s and the load average, summed over the batches."""
        count_sql = f"SELECT count(*) FROM {BASELINE_TABLE}"  # noqa: S608
        stored = self._conn.execute(count_sql).fetchone()
        self._conn.commit()
        return {**self._clock.figures(self.rows), "rows_in_table": stored[0] if stored else 0}

    def __enter__(self) -> "CopyInBaseline":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the table (so that it does not weigh on the export) and disconnect."""
        self._conn.rollback()
        self._conn.execute(f"DROP TABLE IF EXISTS {BASELINE_TABLE}")
        self._conn.commit()
        self._conn.close()


def _sql(stmt: Select[Any]) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def export_selects(dataset_id: int) -> dict[str, str]:
    """The COCO export's own image and annotation SELECTs (whole dataset, default filter)."""
    flt = coco_export.ExportFilter()
    return {
        "images": _sql(coco_export._image_query(dataset_id, flt)),
        "annotations": _sql(coco_export._annotation_query(dataset_id, flt)),
    }


def copy_out_baseline(url: str, dataset_id: int) -> dict[str, Any]:
    """Binary COPY-out of the rows the export reads: seconds and CPU seconds of both SELECTs,
    annotation and image rows, MiB read."""
    n_bytes = 0

    def copy_out(conn: psycopg.Connection[Any], select_sql: str) -> int:
        nonlocal n_bytes
        with conn.cursor() as cur:
            with cur.copy(f"COPY ({select_sql}) TO STDOUT (FORMAT BINARY)") as cp:
                while block := cp.read():
                    n_bytes += len(block)
            return int(cur.rowcount)

    clock, rows = CpuClock(), {}
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        pid = _backend_pid(conn)
        for name, sql in export_selects(dataset_id).items():
            rows[name] = clock.timed(partial(copy_out, conn, sql), backend_pid=pid)
    figures = clock.figures(rows["annotations"])
    del figures["rows_per_s"], figures["rows_per_cpu_s"]
    return {**figures, "images": rows["images"], "mib": n_bytes / 2**20}
