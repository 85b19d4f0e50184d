"""review history: review imports, reviewed images, review events, tuned category thresholds;
annotations may be `superseded` by a reviewer's corrected copy, and keep their detector box's IoU
with their mask's box

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 17:45:26.472632
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TIME = sa.DateTime(timezone=True)
_OLD_REVIEW = ("unreviewed", "accepted", "rejected")
_NEW_REVIEW = (*_OLD_REVIEW, "superseded")
_DECISIONS = ("accepted", "corrected", "rejected", "added")


def _check(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete="CASCADE"
    )


def _set_review_statuses(values: Sequence[str], *, box_iou: bool) -> None:
    with op.batch_alter_table("annotations") as batch:
        if box_iou:
            batch.add_column(sa.Column("box_iou", sa.Float(), nullable=True))
        else:
            batch.drop_column("box_iou")
        batch.drop_constraint(op.f("ck_annotations_review_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_annotations_review_status"), _check("review_status", values)
        )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "review_imports",
        sa.Column("id", _ID, nullable=False),
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("tool", sa.String(length=32), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=True),
        sa.Column("counts", _JSON, nullable=False),
        sa.Column("imported_at", _TIME, nullable=False),
        _fk("review_imports", "dataset_id", "datasets"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_imports")),
        sa.UniqueConstraint(
            "dataset_id", "sha256", name=op.f("uq_review_imports_dataset_id_sha256")
        ),
    )
    op.create_table(
        "category_thresholds",
        sa.Column("id", _ID, nullable=False),
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("category_id", _ID, nullable=False),
        sa.Column("box_threshold", sa.Float(), nullable=False),
        sa.Column("text_threshold", sa.Float(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("before", _JSON, nullable=False),
        sa.Column("after", _JSON, nullable=False),
        sa.Column("sample_images", sa.Integer(), nullable=False),
        sa.Column("tuned_at", _TIME, nullable=False),
        _fk("category_thresholds", "category_id", "categories"),
        _fk("category_thresholds", "dataset_id", "datasets"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_category_thresholds")),
        sa.UniqueConstraint("category_id", name=op.f("uq_category_thresholds_category_id")),
    )
    op.create_table(
        "review_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("import_id", _ID, nullable=False),
        sa.Column("dataset_id", _ID, nullable=False),
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("annotation_id", _ID, nullable=False),
        sa.Column("result_id", _ID, nullable=True),
        sa.Column(
            "decision",
            sa.Enum(
                *_DECISIONS,
                name="review_decision",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reviewer", sa.String(length=200), nullable=True),
        sa.Column("reviewed_at", _TIME, nullable=False),
        sa.Column("item_key", sa.String(length=200), nullable=True),
        sa.Column("details", _JSON, nullable=False),
        _fk("review_events", "import_id", "review_imports"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
    )
    op.create_index("ix_review_events_annotation", "review_events", ["annotation_id"])
    op.create_index("ix_review_events_image", "review_events", ["image_id"])
    op.create_index(op.f("ix_review_events_import_id"), "review_events", ["import_id"])
    op.create_table(
        "reviewed_images",
        sa.Column("id", _ID, nullable=False),
        sa.Column("import_id", _ID, nullable=False),
        sa.Column("image_id", _ID, nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=True),
        sa.Column("reviewed_at", _TIME, nullable=False),
        _fk("reviewed_images", "image_id", "images"),
        _fk("reviewed_images", "import_id", "review_imports"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewed_images")),
        sa.UniqueConstraint(
            "import_id", "image_id", name=op.f("uq_reviewed_images_import_id_image_id")
        ),
    )
    op.create_index(op.f("ix_reviewed_images_image_id"), "reviewed_images", ["image_id"])
    _set_review_statuses(_NEW_REVIEW, box_iou=True)


def downgrade() -> None:
    """Revert this revision (superseded predictions become rejected: the old schema has no such
    status; the corrected copies stay, accepted)."""
    op.execute(
        "UPDATE annotations SET review_status = 'rejected' WHERE review_status = 'superseded'"
    )
    _set_review_statuses(_OLD_REVIEW, box_iou=False)
    op.drop_index(op.f("ix_reviewed_images_image_id"), table_name="reviewed_images")
    op.drop_table("reviewed_images")
    op.drop_index(op.f("ix_review_events_import_id"), table_name="review_events")
    op.drop_index("ix_review_events_image", table_name="review_events")
    op.drop_index("ix_review_events_annotation", table_name="review_events")
    op.drop_table("review_events")
    op.drop_table("category_thresholds")
    op.drop_table("review_imports")
