"""Repository functions: keyword-only, take the caller's `Session`, never commit.

Annotation bulk writes live in `autolabel.storage.db.bulk`.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from autolabel.storage.db.base import dialect_insert, id_in, utc_now
from autolabel.storage.db.records import ImageIn
from autolabel.storage.db.tables import (
    Annotation,
    Category,
    Dataset,
    Image,
    ImageResult,
    ImageStatus,
    ResultStatus,
    ReviewStatus,
)

_CHUNK = 1000


def get_or_create_dataset(session: Session, *, name: str) -> int:
    """Id of the dataset called `name`, created if missing (safe under concurrency)."""
    stmt = dialect_insert(session, Dataset).values(name=name, created_at=utc_now())
    session.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
    return session.execute(select(Dataset.id).where(Dataset.name == name)).scalar_one()


def ensure_categories(
    session: Session, *, dataset_id: int, names: Sequence[str] | Mapping[str, str | None]
) -> dict[str, int]:
    """Ids of the dataset's categories by name, creating missing ones.

    Args:
        session: Caller's session.
        dataset_id: Dataset the categories belong to.
        names: Category names, or a mapping name -> supercategory.
    """
    supers = dict(names) if isinstance(names, Mapping) else dict.fromkeys(names)
    if supers:
        rows = [
            {"dataset_id": dataset_id, "name": n, "supercategory": s} for n, s in supers.items()
        ]
        stmt = dialect_insert(session, Category).on_conflict_do_nothing(
            index_elements=["dataset_id", "name"]
        )
        session.execute(stmt, rows)
    found = session.execute(
        select(Category.name, Category.id).where(
            Category.dataset_id == dataset_id, Category.name.in_(list(supers))
        )
    )
    return dict(found.all())


def register_images(
    session: Session, *, dataset_id: int, images: Sequence[ImageIn]
) -> dict[str, int]:
    """Upsert images by (dataset_id, storage_key); returns storage_key -> image id.

    A changed etag updates size and dimensions and resets the status to pending (the image will be
    reprocessed); an unchanged etag leaves the row's status alone.
    """
    ids: dict[str, int] = {}
    for start in range(0, len(images), _CHUNK):
        chunk = {im.storage_key: im for im in images[start : start + _CHUNK]}
        rows = [
            {
                "dataset_id": dataset_id,
                "storage_key": im.storage_key,
                "etag": im.etag,
                "size_bytes": im.size_bytes,
                "width": im.width,
                "height": im.height,
                "status": ImageStatus.PENDING,
                "updated_at": utc_now(),
            }
            for im in chunk.values()
        ]
        ins = dialect_insert(session, Image)
        changed = Image.etag != ins.excluded.etag
        stmt = ins.on_conflict_do_update(
            index_elements=["dataset_id", "storage_key"],
            set_={
                "etag": ins.excluded.etag,
                "size_bytes": func.coalesce(ins.excluded.size_bytes, Image.size_bytes),
                "width": func.coalesce(ins.excluded.width, Image.width),
                "height": func.coalesce(ins.excluded.height, Image.height),
                "status": _case(changed, ImageStatus.PENDING.value, Image.status),
                "failure_reason": _case(changed, None, Image.failure_reason),
                "updated_at": ins.excluded.updated_at,
            },
        )
        session.execute(stmt, rows)
        found = session.execute(
            select(Image.storage_key, Image.id).where(
                Image.dataset_id == dataset_id, Image.storage_key.in_(list(chunk))
            )
        )
        ids.update(found.all())
    return ids


def _case(condition: Any, then: Any, otherwise: Any) -> Any:
    value = literal(then, type_=otherwise.type) if then is not None else None
    return case((condition, value), else_=otherwise)


def iter_pending_image_ids(
    session: Session,
    *,
    dataset_id: int,
    work_key: str,
    batch_size: int = 1000,
    retry_failed: bool = True,
) -> Iterator[list[int]]:
    """Yield ids of images still to process under `work_key`, in id order, `batch_size` at a time.

    An image is pending unless its current etag has a `done` result for `work_key` (or any result,
    when `retry_failed` is false). Keyset pagination: memory stays O(batch_size) for millions of
    images, and rows committed by the caller between batches are taken into account.
    """
    already = _finished_under(work_key, retry_failed=retry_failed)
    last_id = 0
    while True:
        batch = list(
            session.execute(
                select(Image.id)
                .where(Image.dataset_id == dataset_id, Image.id > last_id, ~already)
                .order_by(Image.id)
                .limit(batch_size)
            ).scalars()
        )
        if not batch:
            return
        yield batch
        last_id = batch[-1]


def _finished_under(work_key: str, *, retry_failed: bool) -> Any:
    """Whether an image's current etag needs no more work under `work_key` (SQL condition)."""
    finished = [ResultStatus.DONE] if retry_failed else [ResultStatus.DONE, ResultStatus.FAILED]
    return exists().where(
        ImageResult.image_id == Image.id,
        ImageResult.work_key == work_key,
        ImageResult.etag == Image.etag,
        ImageResult.status.in_(finished),
    )


def pending_among(
    session: Session, *, image_ids: Sequence[int], work_key: str, retry_failed: bool = True
) -> list[int]:
    """The ids of `image_ids` still to process under `work_key` (as `iter_pending_image_ids`
    decides), in id order: what is left of a shard whose run stopped part-way."""
    if not image_ids:
        return []
    return list(
        session.execute(
            select(Image.id)
            .where(
                id_in(session, Image.id, image_ids),
                ~_finished_under(work_key, retry_failed=retry_failed),
            )
            .order_by(Image.id)
        ).scalars()
    )


def image_status_counts(session: Session, *, dataset_id: int) -> dict[ImageStatus, int]:
    """Number of images per status (every status present, zeros included)."""
    counts = dict.fromkeys(ImageStatus, 0)
    rows = session.execute(
        select(Image.status, func.count())
        .where(Image.dataset_id == dataset_id)
        .group_by(Image.status)
    )
    for status, n in rows:
        counts[ImageStatus(status)] = n
    return counts


def annotation_counts_by_category(
    session: Session, *, dataset_id: int, run_id: int | None = None
) -> dict[str, int]:
    """Number of annotations per category name (categories without annotations give 0)."""
    on = and_(Annotation.category_id == Category.id, Annotation.dataset_id == dataset_id)
    if run_id is not None:
        on = and_(on, Annotation.run_id == run_id)
    rows = session.execute(
        select(Category.name, func.count(Annotation.id))
        .select_from(Category)
        .outerjoin(Annotation, on)
        .where(Category.dataset_id == dataset_id)
        .group_by(Category.name)
    )
    return dict(rows.all())


def delete_dataset(session: Session, *, dataset_id: int) -> int:
    """Delete a dataset with its annotations, images, results, categories and runs.

    Annotations carry no foreign keys (insert speed), so they are deleted here explicitly; the
    other tables cascade from `datasets`.

    Returns:
        Number of annotations deleted.
    """
    deleted = session.execute(delete(Annotation).where(Annotation.dataset_id == dataset_id))
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))
    return int(deleted.rowcount)  # type: ignore[attr-defined]


def set_review_status(
    session: Session, *, annotation_ids: Sequence[int], status: ReviewStatus
) -> int:
    """Record a human review decision on annotations; returns how many rows changed.

    Rejected annotations are left out of COCO exports unless asked for.
    """
    changed = 0
    for start in range(0, len(annotation_ids), _CHUNK):
        chunk = list(annotation_ids[start : start + _CHUNK])
        result = session.execute(
            update(Annotation).where(Annotation.id.in_(chunk)).values(review_status=status)
        )
        changed += int(result.rowcount)  # type: ignore[attr-defined]
    return changed


def mark_review_status(
    session: Session,
    *,
    dataset_id: int,
    status: ReviewStatus,
    run_id: int | None = None,
    category_id: int | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    image_ids: Sequence[int] | None = None,
) -> int:
    """Set the review status of the dataset's annotations that match every given condition.

    Args:
        session: Caller's session.
        dataset_id: The dataset.
        status: The decision recorded.
        run_id: Only annotations of this label run.
        category_id: Only annotations of this category.
        min_score: Only annotations with a detector score of at least this (unscored: excluded).
        max_score: Only annotations with a detector score below this (unscored: excluded).
        image_ids: Only annotations of these images.

    Superseded annotations (a review import stored a correction for them) are never matched.

    Returns:
        Number of annotations matched (their status set, whether or not it changed).
    """
    # A superseded prediction stays superseded: its reviewer's correction stands for it.
    conditions = [
        Annotation.dataset_id == dataset_id,
        Annotation.review_status != ReviewStatus.SUPERSEDED,
    ]
    if run_id is not None:
        conditions.append(Annotation.run_id == run_id)
    if category_id is not None:
        conditions.append(Annotation.category_id == category_id)
    if min_score is not None:
        conditions.append(Annotation.score >= min_score)
    if max_score is not None:
        conditions.append(Annotation.score < max_score)
    stmt = update(Annotation).values(review_status=status)
    if image_ids is None:
        return int(session.execute(stmt.where(*conditions)).rowcount)  # type: ignore[attr-defined]
    ids, changed = sorted(set(image_ids)), 0
    for start in range(0, len(ids), _CHUNK):
        chunk = Annotation.image_id.in_(ids[start : start + _CHUNK])
        changed += int(session.execute(stmt.where(*conditions, chunk)).rowcount)  # type: ignore[attr-defined]
    return changed
