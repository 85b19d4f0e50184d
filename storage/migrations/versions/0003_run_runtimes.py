"""label run runtimes: the runtime each model ran in, per worker choice

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 08:40:00.000000

Runs labeled before this revision ran in torch; they keep an empty record.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("label_runs") as batch:
        batch.add_column(
            sa.Column(
                "runtimes",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default=sa.text("'{}'"),
            )
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("label_runs") as batch:
        batch.drop_column("runtimes")
