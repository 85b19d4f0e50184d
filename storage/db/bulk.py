"""Idempotent bulk writes of annotations and per-image outcomes.

Two paths, both idempotent through the unique key (image_id, work_key, instance_index):
- `write_annotations` (default `skip_existing=True`): on PostgreSQL, COPY into a temporary
  staging table, then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`; on SQLite an executemany
  `INSERT ... ON CONFLICT DO NOTHING`.
- `write_image_batch` (the labeling pipeline): images whose etag already has a `done` result are
  skipped in Python, every other image has its old annotations for the work key deleted, and the
  new rows are COPYed straight into `annotations` (no staging, no ON CONFLICT). A row that exists
  anyway can only come from a concurrent writer: it raises `TransientStorageError`, and the
  retried batch skips the image.
Measured rates are in bench/storage_throughput.py's output (ORM `add_all` is ~30x slower).
"""

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import psycopg
from sqlalchemy import delete, exc, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from autolabel.storage.db.base import BINARY_COPY, dialect_insert, driver_connection, id_in
from autolabel.storage.db.image_results import record_image_results
from autolabel.storage.db.records import AnnotationIn, BatchWriteStats, ImageOutcome
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Image,
    ImageResult,
    LabelRun,
    ResultStatus,
    ReviewStatus,
)
from autolabel.storage.errors import ConflictError, TransientStorageError

_CHUNK = 1000
_ID_CHUNK = 10_000  # ids per lookup (one array parameter on PostgreSQL; SQLite allows 32,766)
_STAGING = "annotations_staging"
# The bulk-written columns, defined once: name and how a row's value is made from an
# `AnnotationIn` (exact Python types: binary COPY has no coercion, so numpy scalars become
# int/float here). The staging table's DDL and the binary COPY types come from the
# `annotations` table's own column types.
_RowSource = tuple[AnnotationIn, int, int | None, str]  # annotation, dataset id, run id, work key
_COLUMN_VALUES: tuple[tuple[str, Callable[[_RowSource], Any]], ...] = (
    ("dataset_id", lambda r: int(r[1])),
    ("image_id", lambda r: int(r[0].image_id)),
    ("category_id", lambda r: int(r[0].category_id)),
    ("run_id", lambda r: None if r[2] is None else int(r[2])),
    ("work_key", lambda r: r[3]),
    ("instance_index", lambda r: int(r[0].instance_index)),
    ("bbox_x", lambda r: float(r[0].bbox_xywh_px[0])),
    ("bbox_y", lambda r: float(r[0].bbox_xywh_px[1])),
    ("bbox_w", lambda r: float(r[0].bbox_xywh_px[2])),
    ("bbox_h", lambda r: float(r[0].bbox_xywh_px[3])),
    ("area", lambda r: float(r[0].area)),
    ("iscrowd", lambda r: bool(r[0].iscrowd)),
    ("seg_counts", lambda r: r[0].seg_counts),
    ("seg_height", lambda r: int(r[0].seg_height)),
    ("seg_width", lambda r: int(r[0].seg_width)),
    ("score", lambda r: _opt_float(r[0].score)),
    ("predicted_iou", lambda r: _opt_float(r[0].predicted_iou)),
    ("stability_score", lambda r: _opt_float(r[0].stability_score)),
    ("phrase", lambda r: r[0].phrase),
    ("model_version", lambda r: r[0].model_version),
    ("box_iou", lambda r: _opt_float(r[0].box_iou)),
)
_COLUMNS = tuple(name for name, _ in _COLUMN_VALUES)
_COPY_TYPE_BY_SQL = {
    "BIGINT": "int8",
    "INTEGER": "int4",
    "FLOAT": "float8",
    "BOOLEAN": "bool",
    "TEXT": "text",
    "VARCHAR": "text",
}


def _pg_type(column: str) -> str:
    dialect: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(Annotation.__table__.c[column].type.compile(dialect=dialect))


_COPY_TYPES = tuple(_COPY_TYPE_BY_SQL[_pg_type(c).split("(")[0]] for c in _COLUMNS)
_STAGING_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ("
    + ", ".join(f"{c} {_pg_type(c)}" for c in _COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)
_COLUMN_LIST = ", ".join(_COLUMNS)
# Built from module constants only (no user input).
_MOVE_SQL = (
    f"INSERT INTO annotations ({_COLUMN_LIST}, review_status) "  # noqa: S608
    f"SELECT {_COLUMN_LIST}, '{ReviewStatus.UNREVIEWED.value}' FROM {_STAGING}"
)
_SKIP_EXISTING = " ON CONFLICT (image_id, work_key, instance_index) DO NOTHING"
_CONCURRENT = (
    "another writer stored annotations for the same (image, work key) concurrently; "
    "retry the batch (it will skip what is stored)"
)


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _row(ann: AnnotationIn, dataset_id: int, run_id: int | None, work_key: str) -> tuple[Any, ...]:
    """One row in `_COLUMNS` order."""
    source = (ann, dataset_id, run_id, work_key)
    return tuple(value(source) for _, value in _COLUMN_VALUES)


def _copy_insert(session: Session, rows: Sequence[tuple[Any, ...]], skip_existing: bool) -> int:
    """COPY rows in: through the staging table when conflicts must be skipped, else directly."""
    raw = driver_connection(session)
    with raw.cursor() as cur:
        try:
            if not skip_existing:
                sql = f"COPY annotations ({_COLUMN_LIST}, review_status) FROM STDIN {BINARY_COPY}"
                with cur.copy(sql) as cp:
                    cp.set_types([*_COPY_TYPES, "text"])
                    unreviewed = (ReviewStatus.UNREVIEWED.value,)
                    for row in rows:
                        cp.write_row(row + unreviewed)
                return len(rows)
            cur.execute(_STAGING_DDL)
            cur.execute(f"TRUNCATE {_STAGING}")
            with cur.copy(f"COPY {_STAGING} ({_COLUMN_LIST}) FROM STDIN {BINARY_COPY}") as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            cur.execute(_MOVE_SQL + _SKIP_EXISTING)
        except psycopg.errors.UniqueViolation as exc:
            raise TransientStorageError(_CONCURRENT) from exc
        return int(cur.rowcount)


def _executemany_insert(
    session: Session, rows: Sequence[tuple[Any, ...]], skip_existing: bool
) -> int:
    stmt = dialect_insert(session, Annotation)
    if skip_existing:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["image_id", "work_key", "instance_index"]
        )
    conn = session.connection()
    inserted = 0
    step = _CHUNK * 10
    for start in range(0, len(rows), step):
        chunk = [dict(zip(_COLUMNS, row, strict=True)) for row in rows[start : start + step]]
        try:
            inserted += conn.execute(stmt, chunk).rowcount
        except exc.IntegrityError as err:
            if "UNIQUE" not in str(err.orig):
                raise
            raise TransientStorageError(_CONCURRENT) from err
    return inserted


def write_annotations(
    session: Session,
    *,
    dataset_id: int,
    work_key: str,
    run_id: int | None,
    annotations: Iterable[AnnotationIn],
    replace_image_ids: Collection[int] = (),
    skip_existing: bool = True,
) -> int:
    """Insert annotations idempotently; returns how many rows were new.

    Args:
        session: Caller's session (not committed here).
        dataset_id: Dataset of every annotation.
        work_key: Work key of the job that produced them.
        run_id: Label run, or None for imported annotations.
        annotations: Rows to insert; (image_id, instance_index) already stored under `work_key`
            are skipped.
        replace_image_ids: Images whose stored annotations for `work_key` are deleted first
            (reprocessed images).
        skip_existing: Skip rows whose (image_id, work_key, instance_index) is stored
            (`ON CONFLICT DO NOTHING`). False is faster (plain insert) for callers that know no
            such row exists, like `write_image_batch`; a row that exists anyway (a concurrent
            writer) then raises `TransientStorageError` and the retried batch skips it.

    Raises:
        ConflictError: Rows reference images, categories or a run outside `dataset_id`.
        TransientStorageError: `skip_existing` is false and a row already exists.
    """
    rows = [_row(a, dataset_id, run_id, work_key) for a in annotations]
    _check_references(session, dataset_id=dataset_id, run_id=run_id, rows=rows)
    ids = sorted(replace_image_ids)
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        session.execute(
            delete(Annotation).where(
                Annotation.work_key == work_key, id_in(session, Annotation.image_id, chunk)
            )
        )
    if session.get_bind().dialect.name == "postgresql":
        return _copy_insert(session, rows, skip_existing)
    return _executemany_insert(session, rows, skip_existing)


def _missing(
    session: Session, column: Any, dataset_column: Any, dataset_id: int, ids: set[int]
) -> list[int]:
    found: set[int] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), _ID_CHUNK):
        chunk = ordered[start : start + _ID_CHUNK]
        stmt = select(column).where(id_in(session, column, chunk), dataset_column == dataset_id)
        found.update(session.execute(stmt).scalars())
    return sorted(ids - found)


def _check_references(
    session: Session, *, dataset_id: int, run_id: int | None, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Set-wise stand-in for foreign keys: every image and category (and the run) must exist and
    belong to `dataset_id`.

    Raises:
        ConflictError: Some rows reference ids outside the dataset (the first few are named).
    """
    checks = (
        ("image", Image.id, Image.dataset_id, {r[1] for r in rows}),
        ("category", Category.id, Category.dataset_id, {r[2] for r in rows}),
        ("label run", LabelRun.id, LabelRun.dataset_id, set() if run_id is None else {run_id}),
    )
    for label, column, dataset_column, ids in checks:
        missing = _missing(session, column, dataset_column, dataset_id, ids)
        if missing:
            raise ConflictError(
                f"expected {label} ids of dataset {dataset_id}, got {len(missing)} unknown or "
                f"foreign ones, e.g. {missing[:5]}"
            )


def _done_before(
    session: Session, *, work_key: str, outcomes: Sequence[ImageOutcome]
) -> set[tuple[int, str]]:
    """(image_id, etag) pairs of `outcomes` that already have a `done` result under `work_key`."""
    done: set[tuple[int, str]] = set()
    ids = sorted({o.image_id for o in outcomes})
    for start in range(0, len(ids), _ID_CHUNK):
        rows = session.execute(
            select(ImageResult.image_id, ImageResult.etag).where(
                ImageResult.work_key == work_key,
                ImageResult.status == ResultStatus.DONE,
                id_in(session, ImageResult.image_id, ids[start : start + _ID_CHUNK]),
            )
        )
        done.update((iid, etag) for iid, etag in rows)
    return done


def write_image_batch(
    session: Session,
    *,
    dataset_id: int,
    run_id: int | None,
    work_key: str,
    outcomes: Sequence[ImageOutcome],
) -> BatchWriteStats:
    """Persist one batch of processed images: annotations plus idempotency records.

    Safe to retry: images whose etag already has a `done` result under `work_key` keep their
    stored rows (their annotations in this batch are not written again). Every other image (new,
    processed at a new etag, or failing now) first loses its previous annotations for
    `work_key`, then gets the new ones with a plain insert.

    Raises:
        TransientStorageError: A concurrent writer stored the same image meanwhile (retry).
    """
    done_before = _done_before(session, work_key=work_key, outcomes=outcomes)
    fresh = [o for o in outcomes if (o.image_id, o.etag) not in done_before]
    inserted = write_annotations(
        session,
        dataset_id=dataset_id,
        work_key=work_key,
        run_id=run_id,
        annotations=(a for o in fresh if o.status is ResultStatus.DONE for a in o.annotations),
        replace_image_ids={o.image_id for o in fresh},
        skip_existing=False,
    )
    record_image_results(session, run_id=run_id, work_key=work_key, outcomes=outcomes)
    n_done = sum(o.status is ResultStatus.DONE for o in outcomes)
    return BatchWriteStats(
        annotations_inserted=inserted,
        images_replaced=len(fresh),
        images_done=n_done,
        images_failed=len(outcomes) - n_done,
    )
