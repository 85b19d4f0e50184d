"""Review decisions on stored annotations (SQLite): filters of `mark_annotations` and its errors."""

import pytest
from sqlalchemy import Engine, select

from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.review import (
    ReviewSelectionError,
    mark_annotations,
    parse_review_status,
)
from autolabel.storage.db.tables import Annotation, Category, ReviewStatus
from tests.unit.storage.test_coco import URL_KEYS, populate

ACCEPTED = ReviewStatus.ACCEPTED


def _statuses(engine: Engine) -> dict[int, ReviewStatus]:
    with session_scope(engine) as session:
        rows = session.execute(select(Annotation.id, Annotation.review_status))
        return {aid: ReviewStatus(status) for aid, status in rows}


def test_filters_combine_and_only_matching_annotations_change(engine: Engine) -> None:
    with session_scope(engine) as session:
        _dataset, run = populate(session, keys=URL_KEYS, source="s3://bucket/raw/")
        dog = session.execute(select(Category.id).where(Category.name == "dog")).scalar_one()
        rows = session.execute(
            select(Annotation.id, Annotation.image_id, Annotation.category_id, Annotation.score)
        ).all()
    marked = mark_annotations(
        engine, dataset="ds0", status=ACCEPTED, category="dog", min_score=0.35, run_id=run
    )
    expected = {a for a, _i, c, s in rows if c == dog and s >= 0.35}
    assert marked == len(expected) > 0
    assert {a for a, s in _statuses(engine).items() if s is ACCEPTED} == expected
    rejected = ReviewStatus.REJECTED
    last_image = max(i for _a, i, _c, _s in rows)
    n = mark_annotations(
        engine, dataset="ds0", status=rejected, max_score=0.35, image_urls=[URL_KEYS[-1]]
    )
    below = {a for a, i, _c, s in rows if i == last_image and s < 0.35}
    assert n == len(below) > 0
    assert {a for a, s in _statuses(engine).items() if s is rejected} == below
    assert mark_annotations(engine, dataset="ds0", status=ReviewStatus.UNREVIEWED) == len(rows)
    assert set(_statuses(engine).values()) == {ReviewStatus.UNREVIEWED}


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({"dataset": "nope"}, "existing dataset"),
        ({"category": "tree"}, "category"),
        ({"run_id": 999}, "label run"),
        ({"image_urls": ["s3://bucket/raw/missing.jpg"]}, "1 unknown"),
    ],
)
def test_unknown_names_are_errors_and_change_nothing(
    engine: Engine, selection: dict[str, object], message: str
) -> None:
    with session_scope(engine) as session:
        populate(session, keys=URL_KEYS)
    arguments: dict[str, object] = {"dataset": "ds0", **selection}
    with pytest.raises(ReviewSelectionError, match=message):
        mark_annotations(engine, status=ACCEPTED, **arguments)  # type: ignore[arg-type]
    assert set(_statuses(engine).values()) == {ReviewStatus.UNREVIEWED}


def test_status_names() -> None:
    assert parse_review_status(" Accepted ") is ACCEPTED
    with pytest.raises(ReviewSelectionError, match="unreviewed, accepted, rejected"):
        parse_review_status("pending")


def test_superseded_predictions_are_never_marked(engine: Engine) -> None:
    with session_scope(engine) as session:
        populate(session, keys=URL_KEYS)
        first = session.scalars(select(Annotation).order_by(Annotation.id)).first()
        assert first is not None
        first.review_status = ReviewStatus.SUPERSEDED
        superseded = first.id
    total = len(_statuses(engine))
    assert mark_annotations(engine, dataset="ds0", status=ACCEPTED) == total - 1
    assert _statuses(engine)[superseded] is ReviewStatus.SUPERSEDED
    with pytest.raises(ReviewSelectionError, match="status"):
        parse_review_status("superseded")
