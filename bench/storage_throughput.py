"""Storage throughput: annotation inserts into PostgreSQL, COCO export, listing and decoding.

Creates a throwaway database on the PostgreSQL server (`--pg-url`, an admin URL), migrates it,
and measures:
- bulk insert rate of `write_annotations` (COPY into a staging table + INSERT ... ON CONFLICT),
- ORM `session.add_all` insert rate, for comparison,
- COCO export (RLE) of every annotation from the database, with wall time and the peak RSS of a
  child process that does only the export,
- listing and decode rows from `bench/storage_io_cases.py` when that module is present (listing
  runs against a moto S3 server started here).

Usage: python bench/storage_throughput.py [--quick] [--json out.json] [--pg-url URL]

Measured 2026-11-27 on the 2-core dev machine shared with other jobs (1-min load average ~5),
full run (1,000,000 annotations, 10 per image, 640x480 blob masks):
- write_image_batch: 96,900 rows/s wall; 155,000 rows per CPU second (client 2.4 s + PostgreSQL
  backend 4.1 s for 1M rows), so about 2x headroom on an idle machine.
- write_annotations (ON CONFLICT): 89,000 rows/s wall; ORM add_all: 3,100 rows/s.
- COCO export of 1M annotations: 10.1 s, peak RSS 188 MiB, 354 MiB of JSON.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import delete

from autolabel.storage.db.bulk import write_annotations, write_image_batch
from autolabel.storage.db.coco_export import write_coco_json
from autolabel.storage.db.engine import make_engine, session_scope, upgrade_to_head
from autolabel.storage.db.records import AnnotationIn, ImageIn, ImageOutcome
from autolabel.storage.db.repository import (
    ensure_categories,
    get_or_create_dataset,
    register_images,
)
from autolabel.storage.db.tables import Annotation, ResultStatus
from autolabel.storage.rle import encode_masks, rle_areas, rle_bboxes

HEIGHT, WIDTH = 480, 640
PER_IMAGE = 10
WORK_KEY = "f" * 64
UPSERT_KEY = "e" * 64
ORM_KEY = "0" * 64


@contextmanager
def temp_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"autolabel_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mask_pool(n: int = 64) -> list[tuple[str, tuple[float, ...], float]]:
    """(counts, bbox, area) of `n` random blob masks at 640x480 (realistic RLE lengths)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    stack = np.zeros((HEIGHT, WIDTH, n), dtype=np.uint8, order="F")
    for i in range(n):
        cy, cx = rng.integers(60, HEIGHT - 60), rng.integers(60, WIDTH - 60)
        ry, rx = rng.integers(8, 60, size=2)
        wobble = 1 + 0.2 * np.sin(np.arctan2(yy - cy, xx - cx) * rng.integers(2, 7))
        stack[:, :, i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= wobble
    rles = encode_masks(stack)
    boxes, areas = rle_bboxes(rles), rle_areas(rles)
    return [(r["counts"], tuple(boxes[i]), float(areas[i])) for i, r in enumerate(rles)]


def make_rows(image_ids: list[int], category_id: int, pool: list[Any]) -> list[AnnotationIn]:
    """PER_IMAGE annotations per image, masks cycled from `pool`."""
    rows = []
    for n, image_id in enumerate(image_ids):
        for i in range(PER_IMAGE):
            counts, bbox, area = pool[(n * PER_IMAGE + i) % len(pool)]
            rows.append(
                AnnotationIn(
                    image_id=image_id,
                    category_id=category_id,
                    instance_index=i,
                    bbox_xywh_px=bbox,
                    area=area,
                    seg_counts=counts,
                    seg_height=HEIGHT,
                    seg_width=WIDTH,
                    score=0.5 + 0.04 * i,
                    predicted_iou=0.91,
                    stability_score=0.97,
                    phrase="object",
                    model_version="efficientvit-sam-l0",
                )
            )
    return rows


def setup_images(url: str, n_images: int) -> tuple[int, int, list[int]]:
    """Dataset, category and `n_images` registered images."""
    engine = make_engine(url)
    upgrade_to_head(engine)
    with session_scope(engine) as session:
        dataset_id = get_or_create_dataset(session, name="bench")
        category_id = ensure_categories(session, dataset_id=dataset_id, names=["object"])["object"]
        images = [
            ImageIn(storage_key=f"shard/{i:08d}.jpg", etag=f"e{i}", width=WIDTH, height=HEIGHT)
            for i in range(n_images)
        ]
        ids = sorted(register_images(session, dataset_id=dataset_id, images=images).values())
    with engine.connect() as conn:  # as if every image had been processed
        conn.exec_driver_sql("UPDATE images SET status = 'done'")
        conn.commit()
    engine.dispose()
    return dataset_id, category_id, ids


def backend_pid(session: Any) -> int:
    """Process id of the session's PostgreSQL backend."""
    return int(session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` (0.0 if /proc is unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _write(session: Any, mode: str, dataset_id: int, rows: list[AnnotationIn]) -> int:
    """One batch through the pipeline path (write_image_batch) or the upsert path."""
    if mode == "upsert":
        return write_annotations(
            session, dataset_id=dataset_id, work_key=UPSERT_KEY, run_id=None, annotations=rows
        )
    per_image: dict[int, list[AnnotationIn]] = {}
    for row in rows:
        per_image.setdefault(row.image_id, []).append(row)
    outcomes = [
        ImageOutcome(image_id=i, etag=f"e{i}", status=ResultStatus.DONE, annotations=tuple(anns))
        for i, anns in per_image.items()
    ]
    stats = write_image_batch(
        session, dataset_id=dataset_id, run_id=None, work_key=WORK_KEY, outcomes=outcomes
    )
    return stats.annotations_inserted


def bench_bulk(
    url: str, dataset_id: int, category_id: int, ids: list[int], batch: int, mode: str
) -> dict[str, Any]:
    """Insert PER_IMAGE annotations for every image, `batch` images per transaction.

    `mode` "pipeline": `write_image_batch` (annotations by COPY + plain INSERT ... SELECT, plus
    the per-image idempotency rows); "upsert": `write_annotations` with ON CONFLICT DO NOTHING.
    Besides wall time, records the CPU seconds of this process and of the PostgreSQL backend, so
    that rates can be judged on a machine shared with other work (load average printed too).
    """
    engine = make_engine(url)
    pool = mask_pool()
    total, elapsed, client_cpu, server_cpu = 0, 0.0, 0.0, 0.0
    for start in range(0, len(ids), batch):
        rows = make_rows(ids[start : start + batch], category_id, pool)
        with session_scope(engine) as session:
            pid = backend_pid(session)
            server0 = process_cpu_s(pid)
            t0, c0 = time.perf_counter(), time.process_time()
            total += _write(session, mode, dataset_id, rows)
            session.commit()
            elapsed += time.perf_counter() - t0
            client_cpu += time.process_time() - c0
            server_cpu += process_cpu_s(pid) - server0
    t0 = time.perf_counter()
    with session_scope(engine) as session:  # a retried batch: everything is skipped
        retried = _write(session, mode, dataset_id, make_rows(ids[:batch], category_id, pool))
    retry_s = time.perf_counter() - t0
    engine.dispose()
    return {
        "mode": mode,
        "rows": total,
        "seconds": elapsed,
        "rows_per_s": total / elapsed,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "rows_per_cpu_s": total / (client_cpu + server_cpu) if server_cpu else None,
        "retried_batch_inserted": retried,
        "retried_batch_rows_per_s": batch * PER_IMAGE / retry_s,
        "load_average_1m": os.getloadavg()[0],
    }


def drop_work_key(url: str, work_key: str) -> None:
    """Delete the rows of a comparison run so that the export measures the pipeline rows only."""
    engine = make_engine(url)
    with engine.connect() as conn:
        conn.execute(delete(Annotation).where(Annotation.work_key == work_key))
        conn.commit()
    engine.dispose()


def bench_orm(url: str, dataset_id: int, category_id: int, ids: list[int]) -> dict[str, Any]:
    """ORM add_all of the same rows under another work key (the slow path, for comparison)."""
    engine = make_engine(url)
    rows = make_rows(ids, category_id, mask_pool())
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        session.add_all(
            Annotation(
                dataset_id=dataset_id,
                image_id=r.image_id,
                category_id=r.category_id,
                work_key=ORM_KEY,
                instance_index=r.instance_index,
                bbox_x=r.bbox_xywh_px[0],
                bbox_y=r.bbox_xywh_px[1],
                bbox_w=r.bbox_xywh_px[2],
                bbox_h=r.bbox_xywh_px[3],
                area=r.area,
                iscrowd=False,
                seg_counts=r.seg_counts,
                seg_height=HEIGHT,
                seg_width=WIDTH,
                score=r.score,
                predicted_iou=r.predicted_iou,
                stability_score=r.stability_score,
                phrase=r.phrase,
                model_version=r.model_version,
            )
            for r in rows
        )
    seconds = time.perf_counter() - t0
    engine.dispose()
    drop_work_key(url, ORM_KEY)
    return {"rows": len(rows), "seconds": seconds, "rows_per_s": len(rows) / seconds}


def export_child(url: str, dataset_id: int, out: Path) -> dict[str, Any]:
    """Run only the export (in a child process, so its peak RSS is the export's own)."""
    import resource

    engine = make_engine(url)
    with session_scope(engine) as session:
        stats = write_coco_json(session, dataset_id=dataset_id, destination=out)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "annotations": stats.n_annotations,
        "images": stats.n_images,
        "seconds": stats.seconds,
        "annotations_per_s": stats.n_annotations / stats.seconds,
        "peak_rss_mib": peak_kib / 1024,
        "file_mib": out.stat().st_size / 2**20,
    }


def bench_export(url: str, dataset_id: int) -> dict[str, Any]:
    """COCO export of the dataset in a child process; verifies the JSON parses."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coco.json"
        cmd = [sys.executable, __file__, "--export-child", url, str(dataset_id), str(out)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)  # noqa: S603
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        t0 = time.perf_counter()
        with out.open("rb") as fh:
            doc = json.load(fh)
        result["json_load_s"] = time.perf_counter() - t0
        if len(doc["annotations"]) != result["annotations"]:
            raise RuntimeError("exported annotation count does not match the file")
    return result


def io_rows(quick: bool) -> list[dict[str, Any]]:
    """Listing (moto S3 server) and decode rows from bench/storage_io_cases.py, if present."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import storage_io_cases  # type: ignore[import-not-found]
    except ImportError:
        return []
    sys.path.pop(0)
    cases: Callable[[bool], list[dict[str, Any]]]
    rows: list[dict[str, Any]] = []
    for cases in (storage_io_cases.decode_cases, storage_io_cases.moto_listing_cases):
        rows.extend(cases(quick))
    return rows


def print_table(results: dict[str, Any]) -> None:
    """Human-readable summary."""
    orm, export = results["orm_add_all"], results["coco_export"]
    quick = results["quick"]
    lines = [
        f"{'QUICK mode: ' if quick else ''}{results['annotations_target']:,} annotations "
        f"({'the full run uses 1,000,000' if quick else 'full run'})",
        f"load average (1 min) during inserts: {results['bulk_insert']['load_average_1m']:.1f} "
        f"on {os.cpu_count()} CPUs",
        f"{'case':<52}{'rows':>11}{'seconds':>9}{'per second':>13}",
    ]
    for key, label in (
        ("bulk_insert", "insert: write_image_batch (COPY, plain INSERT)"),
        ("upsert_insert", "insert: write_annotations (COPY, ON CONFLICT)"),
    ):
        bulk = results[key]
        cpu = bulk["rows_per_cpu_s"]
        lines += [
            f"{label:<52}{bulk['rows']:>11,}{bulk['seconds']:>9.2f}{bulk['rows_per_s']:>13,.0f}",
            f"{'  same, per CPU second (client + server backend)':<52}{'':>11}"
            f"{bulk['client_cpu_s'] + bulk['server_cpu_s']:>9.2f}"
            f"{cpu if cpu is None else format(cpu, ',.0f'):>13}",
            f"{'  retried batch (everything skipped)':<52}{'':>11}{'':>9}"
            f"{bulk['retried_batch_rows_per_s']:>13,.0f}",
        ]
    lines += [
        f"{'insert: ORM add_all':<52}{orm['rows']:>11,}{orm['seconds']:>9.2f}"
        f"{orm['rows_per_s']:>13,.0f}",
        f"{'COCO export, RLE (peak RSS ' + format(export['peak_rss_mib'], '.0f') + ' MiB)':<52}"
        f"{export['annotations']:>11,}{export['seconds']:>9.2f}"
        f"{export['annotations_per_s']:>13,.0f}",
    ]
    for row in results["io"]:
        value = row.get("value")
        shown = f"{value:,.1f} {row.get('unit', '')}" if isinstance(value, float | int) else ""
        lines.append(f"{str(row.get('case', ''))[:63]:<63}{shown:>22}")
    print("\n".join(lines))


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k annotations instead of 1M")
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--export-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        url, dataset_id, out = args.export_child
        print(json.dumps(export_child(url, int(dataset_id), Path(out))))
        return
    n_images = 10_000 if args.quick else 100_000
    with temp_database(args.pg_url) as url:
        dataset_id, category_id, ids = setup_images(url, n_images)
        results: dict[str, Any] = {
            "machine": platform.platform(),
            "quick": args.quick,
            "annotations_target": n_images * PER_IMAGE,
            "per_image": PER_IMAGE,
        }
        results["orm_add_all"] = bench_orm(url, dataset_id, category_id, ids[:2_000])
        upsert_ids = ids[: len(ids) // 5]
        results["upsert_insert"] = bench_bulk(
            url, dataset_id, category_id, upsert_ids, batch=5_000, mode="upsert"
        )
        drop_work_key(url, UPSERT_KEY)
        results["bulk_insert"] = bench_bulk(
            url, dataset_id, category_id, ids, batch=5_000, mode="pipeline"
        )
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE annotations")
        results["coco_export"] = bench_export(url, dataset_id)
    results["io"] = io_rows(args.quick)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
