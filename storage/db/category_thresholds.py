"""Detector thresholds tuned per category from reviewed labels (`autolabel tune-thresholds`).

One row per category (`category_thresholds`, unique by category): the box and text thresholds
chosen, the metric they maximise, and the metric before and after on the reviewed sample. Later
label runs of the dataset use them for the categories their job does not set itself. Keyword-only
functions on the caller's session; they never commit.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autolabel.storage.db.base import dialect_insert, utc_now
from autolabel.storage.db.tables import Category, CategoryThreshold
from autolabel.storage.errors import StorageConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class TunedThreshold:
    """The thresholds chosen for one category.

    Attributes:
        category: Category name, as stored in the dataset.
        box_threshold: Box threshold in [0, 1] (best token probability).
        text_threshold: Text threshold in [0, 1] (matched-phrase probability).
        metric: What was maximised, e.g. "f1@0.5/mask" or "ap@0.5/box".
        before: The metric and counts at the thresholds in use before tuning.
        after: The same at the chosen thresholds.
        sample_images: Reviewed images the choice was made on.
    """

    category: str
    box_threshold: float
    text_threshold: float
    metric: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    sample_images: int = 0


def save_category_thresholds(
    session: Session, *, dataset_id: int, tuned: Sequence[TunedThreshold]
) -> dict[str, int]:
    """Insert or replace the tuned thresholds of the dataset's categories.

    Returns:
        Category name -> row id of every saved threshold.

    Raises:
        StorageConfigError: A category the dataset does not have.
    """
    names = [t.category for t in tuned]
    ids = dict(
        session.execute(
            select(Category.name, Category.id).where(
                Category.dataset_id == dataset_id, Category.name.in_(names)
            )
        ).all()
    )
    unknown = sorted(set(names) - set(ids))
    if unknown:
        raise StorageConfigError(
            f"expected categories of dataset {dataset_id}, got unknown {unknown}"
        )
    saved: dict[str, int] = {}
    for item in tuned:
        values = {
            "box_threshold": float(item.box_threshold),
            "text_threshold": float(item.text_threshold),
            "metric": item.metric,
            "before": dict(item.before),
            "after": dict(item.after),
            "sample_images": int(item.sample_images),
            "tuned_at": utc_now(),
        }
        stmt = dialect_insert(session, CategoryThreshold).values(
            dataset_id=dataset_id, category_id=ids[item.category], **values
        )
        upsert = stmt.on_conflict_do_update(index_elements=["category_id"], set_=values)
        session.execute(upsert)
        saved[item.category] = session.execute(
            select(CategoryThreshold.id).where(CategoryThreshold.category_id == ids[item.category])
        ).scalar_one()
    return saved


def load_category_thresholds(session: Session, *, dataset_id: int) -> dict[str, TunedThreshold]:
    """The dataset's tuned thresholds by category name (empty when none were tuned)."""
    rows = session.execute(
        select(CategoryThreshold, Category.name)
        .join(Category, Category.id == CategoryThreshold.category_id)
        .where(CategoryThreshold.dataset_id == dataset_id)
        .order_by(Category.name)
    )
    return {
        name: TunedThreshold(
            category=name,
            box_threshold=row.box_threshold,
            text_threshold=row.text_threshold,
            metric=row.metric,
            before=dict(row.before),
            after=dict(row.after),
            sample_images=row.sample_images,
        )
        for row, name in rows
    }
