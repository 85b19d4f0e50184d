"""Human review decisions: mark a dataset's annotations accepted, rejected or unreviewed.

`mark_annotations` is the public entry point (the CLI's `autolabel review mark`): it resolves
names (dataset, category, image URLs) to ids, checks them, and calls
`autolabel.storage.db.repository.mark_review_status` in one transaction of its own. Accepted
annotations are what `export-sa1b --accepted-only` exports; rejected ones are left out of every
export unless asked for.
"""

from collections.abc import Sequence

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.repository import mark_review_status
from autolabel.storage.db.tables import ReviewStatus
from autolabel.storage.errors import StorageError

# What a person may set by hand (`superseded` is set only by a review import's correction).
REVIEW_STATUSES = tuple(s.value for s in ReviewStatus if s is not ReviewStatus.SUPERSEDED)


class ReviewSelectionError(StorageError, ValueError):
    """A review request naming an unknown status, dataset, run, category or image."""


def parse_review_status(value: str) -> ReviewStatus:
    """The `ReviewStatus` called `value` (case-insensitive); `ReviewSelectionError` otherwise."""
    name = value.strip().lower()
    if name in REVIEW_STATUSES:
        return ReviewStatus(name)
    raise ReviewSelectionError(
        f"expected a review status among {', '.join(REVIEW_STATUSES)}, got {value!r}"
    )


def _image_ids(session: Session, dataset_id: int, dataset: str, urls: Sequence[str]) -> list[int]:
    found = queries.image_ids_by_key(session, dataset_id=dataset_id, storage_keys=urls)
    missing = sorted(set(urls) - set(found))
    if missing:
        raise ReviewSelectionError(
            f"expected images of dataset {dataset!r}, got {len(missing)} unknown: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        )
    return list(found.values())


def _check_run(session: Session, dataset: str, run_id: int) -> None:
    try:
        run = queries.get_label_run(session, run_id=run_id)
    except LookupError as exc:
        raise ReviewSelectionError(str(exc)) from None
    if run.dataset != dataset:
        raise ReviewSelectionError(
            f"expected a label run of dataset {dataset!r}, got run {run_id} of {run.dataset!r}"
        )


def mark_annotations(
    engine: Engine,
    *,
    dataset: str,
    status: ReviewStatus,
    run_id: int | None = None,
    category: str | None = None,
    min_score: float | None = None,
    max_score: float | None = None,
    image_urls: Sequence[str] = (),
) -> int:
    """Record one review decision on every annotation of `dataset` matching all conditions.

    Args:
        engine: The annotation database (the transaction is committed here).
        dataset: Dataset name.
        status: The decision.
        run_id: Only this label run's annotations.
        category: Only this category's annotations.
        min_score: Only annotations scored at least this (unscored ones are never matched).
        max_score: Only annotations scored below this (unscored ones are never matched).
        image_urls: Only these images' annotations (storage URLs as stored); empty: all images.

    Returns:
        Number of annotations marked.

    Raises:
        ReviewSelectionError: Unknown dataset, run (or one of another dataset), category or image.
    """
    with session_scope(engine) as session:
        dataset_id = queries.find_dataset(session, name=dataset)
        if dataset_id is None:
            raise ReviewSelectionError(f"expected an existing dataset, got {dataset!r}")
        if run_id is not None:
            _check_run(session, dataset, run_id)
        category_id = None
        if category is not None:
            category_id = queries.find_category(session, dataset_id=dataset_id, name=category)
            if category_id is None:
                raise ReviewSelectionError(
                    f"expected a category of dataset {dataset!r}, got {category!r}"
                )
        image_ids = _image_ids(session, dataset_id, dataset, image_urls) if image_urls else None
        return mark_review_status(
            session,
            dataset_id=dataset_id,
            status=status,
            run_id=run_id,
            category_id=category_id,
            min_score=min_score,
            max_score=max_score,
            image_ids=image_ids,
        )
