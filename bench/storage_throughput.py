"""Storage throughput: annotation inserts into PostgreSQL, COCO export, listing and decoding.

Creates a throwaway database on the PostgreSQL server (`--pg-url`, an admin URL), migrates it,
and measures:
- the labeling pipeline's bulk insert, `write_image_batch` (COPY straight into `annotations`),
  against a same-run baseline: raw binary COPY of the same rows into a plain table of the same
  column types (bench/_storage_baselines.py), batch by batch, interleaved;
- `write_annotations` (COPY into a staging table + INSERT ... ON CONFLICT) and ORM `add_all`;
- COCO export (RLE) of every annotation in a child process (wall and CPU seconds, peak RSS),
  against raw binary COPY-out of the export's own SELECTs, run before and after it (mean);
- listing and decode rows from `bench/storage_io_cases.py` when that module is present (listing
  runs against a moto S3 server started here).
Insert and export are reported as ratios to their baselines, which travel between machines
better than rows/s or seconds. See bench/README.md for the columns.

Usage: python bench/storage_throughput.py [--quick] [--json out.json] [--pg-url URL]

Measured 2026-12-06 on the 2-core dev machine while other benchmarks ran (1-min load average
7-8), full run (1,000,000 annotations, 10 per image, 640x480 blob masks):
- write_image_batch 32,600 rows/s = 0.22x raw binary COPY 151,600 rows/s (CPU: 0.23x; 59,500
  vs 255,200 rows per client + backend CPU second).
- COCO export 36.5 s = 6.1x raw binary COPY-out 6.0 s (CPU: 5.0x; 18.6 vs 3.7 s); peak RSS
  189 MiB, 354 MiB of JSON (305 MiB of binary COPY).
- write_annotations (ON CONFLICT) 24,800 rows/s; ORM add_all 1,300 rows/s.
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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from _storage_baselines import (  # type: ignore[import-not-found, unused-ignore]
    CopyInBaseline,
    CpuClock,
    copy_out_baseline,
    process_cpu_s,
)
from _storage_report import ratios, table_lines  # type: ignore[import-not-found, unused-ignore]
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


def _write_commit(session: Any, mode: str, dataset_id: int, rows: list[AnnotationIn]) -> int:
    inserted = _write(session, mode, dataset_id, rows)
    session.commit()
    return inserted


def bench_bulk(
    url: str,
    dataset_id: int,
    category_id: int,
    ids: list[int],
    *,
    batch: int,
    mode: str,
    baseline: CopyInBaseline | None = None,
) -> dict[str, Any]:
    """Insert PER_IMAGE annotations for every image, `batch` images per transaction.

    `mode` "pipeline": `write_image_batch` (annotations by COPY + plain INSERT ... SELECT, plus
    the per-image idempotency rows); "upsert": `write_annotations` with ON CONFLICT DO NOTHING.
    Besides wall time, records the CPU seconds of this process and of the PostgreSQL backend, so
    that rates can be judged on a machine shared with other work (load average printed too).
    With `baseline`, every batch is also raw-COPYed by it, before the pipeline's on even
    batches and after it on odd ones (so that neither always follows the other).
    """
    engine = make_engine(url)
    pool = mask_pool()
    total, clock = 0, CpuClock()
    for n, start in enumerate(range(0, len(ids), batch)):
        rows = make_rows(ids[start : start + batch], category_id, pool)
        if baseline is not None and n % 2 == 0:
            baseline.write(rows)
        with session_scope(engine) as session:
            work = partial(_write_commit, session, mode, dataset_id, rows)
            total += clock.timed(work, backend_pid=backend_pid(session))
        if baseline is not None and n % 2 == 1:
            baseline.write(rows)
    t0 = time.perf_counter()
    with session_scope(engine) as session:  # a retried batch: everything is skipped
        retried = _write(session, mode, dataset_id, make_rows(ids[:batch], category_id, pool))
    retry_s = time.perf_counter() - t0
    engine.dispose()
    return {
        "mode": mode,
        **clock.figures(total),
        "retried_batch_inserted": retried,
        "retried_batch_rows_per_s": batch * PER_IMAGE / retry_s,
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
    t0, c0 = time.perf_counter(), time.process_time()
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
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    engine.dispose()
    drop_work_key(url, ORM_KEY)
    return {
        "rows": len(rows),
        "seconds": seconds,
        "rows_per_s": len(rows) / seconds,
        "client_cpu_s": cpu_s,
        "load_average_1m": os.getloadavg()[0],
    }


def export_child(url: str, dataset_id: int, out: Path) -> dict[str, Any]:
    """Run only the export (in a child process, so its peak RSS is the export's own)."""
    import resource

    engine = make_engine(url)
    with session_scope(engine) as session:
        pid = backend_pid(session)
        server0, c0 = process_cpu_s(pid), time.process_time()
        stats = write_coco_json(session, dataset_id=dataset_id, destination=out)
        cpu_s, server_cpu_s = time.process_time() - c0, process_cpu_s(pid) - server0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "annotations": stats.n_annotations,
        "images": stats.n_images,
        "seconds": stats.seconds,
        "annotations_per_s": stats.n_annotations / stats.seconds,
        "client_cpu_s": cpu_s,
        "server_cpu_s": server_cpu_s,
        "peak_rss_mib": peak_kib / 1024,
        "file_mib": out.stat().st_size / 2**20,
    }


def _mean_baseline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean seconds and CPU seconds of the COPY-out runs (rows, MiB and load: the last run's)."""
    mean = {
        k: sum(r[k] for r in runs) / len(runs) for k in ("seconds", "client_cpu_s", "server_cpu_s")
    }
    return {**runs[-1], **mean, "seconds_runs": [r["seconds"] for r in runs]}


def bench_export(url: str, dataset_id: int) -> dict[str, Any]:
    """COCO export of the dataset in a child process, between two raw COPY-out baselines;
    verifies the JSON parses and that the baseline read the same number of annotations."""
    before = copy_out_baseline(url, dataset_id)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coco.json"
        cmd = [sys.executable, __file__, "--export-child", url, str(dataset_id), str(out)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)  # noqa: S603
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_average_1m"] = os.getloadavg()[0]
        baseline = result["baseline"] = _mean_baseline([before, copy_out_baseline(url, dataset_id)])
        t0 = time.perf_counter()
        with out.open("rb") as fh:
            doc = json.load(fh)
        result["json_load_s"] = time.perf_counter() - t0
        if len(doc["annotations"]) != result["annotations"] or baseline["rows"] != len(
            doc["annotations"]
        ):
            raise RuntimeError("exported annotation count does not match the file or the baseline")
    return result


def io_rows(quick: bool) -> list[dict[str, Any]]:
    """Listing (moto S3 server) and decode rows from bench/storage_io_cases.py, if present."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import storage_io_cases  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return []
    sys.path.pop(0)
    cases: Callable[[bool], list[dict[str, Any]]]
    rows: list[dict[str, Any]] = []
    for cases in (storage_io_cases.decode_cases, storage_io_cases.moto_listing_cases):
        rows.extend(cases(quick))
    return rows


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
            "load_average": {"start": os.getloadavg()},
        }
        results["orm_add_all"] = bench_orm(url, dataset_id, category_id, ids[:2_000])
        upsert_ids = ids[: len(ids) // 5]
        results["upsert_insert"] = bench_bulk(
            url, dataset_id, category_id, upsert_ids, batch=5_000, mode="upsert"
        )
        drop_work_key(url, UPSERT_KEY)
        with CopyInBaseline.open(url, dataset_id=dataset_id, work_key=WORK_KEY) as baseline:
            results["bulk_insert"] = bench_bulk(
                url, dataset_id, category_id, ids, batch=5_000, mode="pipeline", baseline=baseline
            )
            results["copy_in_baseline"] = baseline.figures()
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE annotations")
        results["coco_export"] = bench_export(url, dataset_id)
    results["load_average"]["end"] = os.getloadavg()
    results["ratios"] = ratios(results)
    results["io"] = io_rows(args.quick)
    print("\n".join(table_lines(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
