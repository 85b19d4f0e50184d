"""Tuned category thresholds (SQLite): saved per category, replaced on a second save, loaded by
name; a category the dataset does not have is refused."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from autolabel.storage.db.category_thresholds import (
    TunedThreshold,
    load_category_thresholds,
    save_category_thresholds,
)
from autolabel.storage.db.repository import ensure_categories, get_or_create_dataset
from autolabel.storage.db.tables import CategoryThreshold
from autolabel.storage.errors import StorageConfigError


def tuned(category: str, box: float, text: float) -> TunedThreshold:
    return TunedThreshold(
        category=category,
        box_threshold=box,
        text_threshold=text,
        metric="f1@0.5/mask",
        before={"f1": 0.5},
        after={"f1": 0.9},
        sample_images=12,
    )


def test_save_replaces_per_category_and_load_reads_by_name(session: Session) -> None:
    dataset = get_or_create_dataset(session, name="ds")
    other = get_or_create_dataset(session, name="other")
    ensure_categories(session, dataset_id=dataset, names=["cat", "dog", "cup"])
    ensure_categories(session, dataset_id=other, names=["cat"])
    assert load_category_thresholds(session, dataset_id=dataset) == {}

    save_category_thresholds(
        session, dataset_id=dataset, tuned=[tuned("cat", 0.3, 0.4), tuned("dog", 0.5, 0.2)]
    )
    save_category_thresholds(session, dataset_id=other, tuned=[tuned("cat", 0.9, 0.9)])
    ids = save_category_thresholds(session, dataset_id=dataset, tuned=[tuned("cat", 0.45, 0.6)])

    loaded = load_category_thresholds(session, dataset_id=dataset)
    assert sorted(loaded) == ["cat", "dog"]
    assert (loaded["cat"].box_threshold, loaded["cat"].text_threshold) == (0.45, 0.6)
    assert (loaded["dog"].box_threshold, loaded["dog"].text_threshold) == (0.5, 0.2)
    assert loaded["cat"].metric == "f1@0.5/mask"
    assert loaded["cat"].after == {"f1": 0.9}
    assert loaded["cat"].sample_images == 12
    assert load_category_thresholds(session, dataset_id=other)["cat"].box_threshold == 0.9
    rows = session.execute(select(func.count()).select_from(CategoryThreshold)).scalar_one()
    assert rows == 3  # the second save of "cat" replaced its row
    assert set(ids) == {"cat"}


def test_unknown_categories_are_refused(session: Session) -> None:
    dataset = get_or_create_dataset(session, name="ds")
    ensure_categories(session, dataset_id=dataset, names=["cat"])
    with pytest.raises(StorageConfigError, match=r"unknown \['tree'\]"):
        save_category_thresholds(session, dataset_id=dataset, tuned=[tuned("tree", 0.3, 0.3)])
