"""Per-image outcomes of a labeling batch: one `image_results` row per (image, work key, etag),
mirrored onto the image's status, in bulk (binary COPY on PostgreSQL, executemany on SQLite)."""

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, func, update
from sqlalchemy.orm import Session

from autolabel.storage.db.base import BINARY_COPY, dialect_insert, driver_connection, utc_now
from autolabel.storage.db.records import ImageOutcome
from autolabel.storage.db.tables import Image, ImageResult


def _opt_int(value: int | None) -> int | None:
    return None if value is None else int(value)


_OUTCOMES = "image_outcomes_staging"
_OUTCOMES_DDL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_OUTCOMES} (
    image_id bigint, etag varchar(200), status varchar(16), failure_reason text,
    n_annotations integer, width integer, height integer
) ON COMMIT DELETE ROWS
"""
_RESULTS_UPSERT = f"""
INSERT INTO image_results
    (image_id, work_key, etag, run_id, status, failure_reason, n_annotations, finished_at)
SELECT image_id, %(work_key)s, etag, %(run_id)s, status, failure_reason, n_annotations, %(now)s
FROM {_OUTCOMES}
ON CONFLICT (image_id, work_key, etag) DO UPDATE SET
    run_id = EXCLUDED.run_id, status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason,
    n_annotations = EXCLUDED.n_annotations, finished_at = EXCLUDED.finished_at
"""  # noqa: S608 - module constants only
_MIRROR_STATUS = f"""
UPDATE images AS i SET status = s.status, failure_reason = s.failure_reason,
    width = COALESCE(s.width, i.width), height = COALESCE(s.height, i.height),
    updated_at = %(now)s
FROM {_OUTCOMES} AS s WHERE i.id = s.image_id AND i.etag = s.etag
"""  # noqa: S608 - module constants only


def record_image_results(
    session: Session, *, run_id: int | None, work_key: str, outcomes: Sequence[ImageOutcome]
) -> None:
    """Upsert the idempotency rows of `outcomes` and mirror them into `images`.

    Each image row gets the outcome's status, failure reason and decoded size, but only while its
    etag still equals the processed etag (an image that changed meanwhile stays pending). On
    PostgreSQL the outcomes go through COPY and two set-based statements; on SQLite through
    executemany. For an image listed twice, the last outcome wins.
    """
    latest = list({(o.image_id, o.etag): o for o in outcomes}.values())
    if not latest:
        return
    params = {"work_key": work_key, "run_id": run_id, "now": utc_now()}
    if session.get_bind().dialect.name != "postgresql":
        _record_results_sqlite(session, latest, params)
        return
    raw = driver_connection(session)
    with raw.cursor() as cur:
        cur.execute(_OUTCOMES_DDL)
        cur.execute(f"TRUNCATE {_OUTCOMES}")
        with cur.copy(f"COPY {_OUTCOMES} FROM STDIN {BINARY_COPY}") as copy:
            copy.set_types(["int8", "text", "text", "text", "int4", "int4", "int4"])
            for o in latest:
                row = (int(o.image_id), o.etag, o.status.value, o.failure_reason)
                copy.write_row((*row, len(o.annotations), _opt_int(o.width), _opt_int(o.height)))
        cur.execute(_RESULTS_UPSERT, params)
        cur.execute(_MIRROR_STATUS, params)


def _record_results_sqlite(
    session: Session, outcomes: Sequence[ImageOutcome], params: dict[str, Any]
) -> None:
    rows = [
        {
            "image_id": o.image_id,
            "work_key": params["work_key"],
            "etag": o.etag,
            "run_id": params["run_id"],
            "status": o.status.value,
            "failure_reason": o.failure_reason,
            "n_annotations": len(o.annotations),
            "finished_at": params["now"],
        }
        for o in outcomes
    ]
    ins = dialect_insert(session, ImageResult)
    upsert = ins.on_conflict_do_update(
        index_elements=["image_id", "work_key", "etag"],
        set_={c: ins.excluded[c] for c in ("run_id", "status", "failure_reason", "n_annotations")}
        | {"finished_at": ins.excluded.finished_at},
    )
    conn = session.connection()
    conn.execute(upsert, rows)
    table = cast(Table, Image.__table__)
    mirror = (
        update(table)
        .where(table.c.id == bindparam("m_id"), table.c.etag == bindparam("m_etag"))
        .values(
            status=bindparam("m_status"),
            failure_reason=bindparam("m_reason"),
            width=func.coalesce(bindparam("m_width", type_=Integer), table.c.width),
            height=func.coalesce(bindparam("m_height", type_=Integer), table.c.height),
            updated_at=params["now"],
        )
    )
    conn.execute(
        mirror,
        [
            {
                "m_id": o.image_id,
                "m_etag": o.etag,
                "m_status": o.status.value,
                "m_reason": o.failure_reason,
                "m_width": o.width,
                "m_height": o.height,
            }
            for o in outcomes
        ],
    )
