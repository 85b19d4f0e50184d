"""label run states: crashed, a reason, a heartbeat, an owner, one running run per dataset

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 02:00:00.000000

Runs left `running` by processes that died before this revision are closed here: every
`running` run but the newest of its dataset becomes `crashed`; the newest has no heartbeat and is
found crashed by the first job or `autolabel runs` after its lease (counted from `started_at`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = ("running", "completed", "failed", "aborted")
_NEW_STATUSES = (*_OLD_STATUSES, "crashed")
_RUNNING = sa.text("status = 'running'")


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("label_runs") as batch:
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("owner_key", sa.String(length=200), nullable=True))
        batch.drop_constraint(op.f("ck_label_runs_run_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_label_runs_run_status"), _status_check(_NEW_STATUSES)
        )
    op.execute(
        "UPDATE label_runs SET status = 'crashed', "
        "status_reason = 'still running when the schema was upgraded: its process is gone' "
        "WHERE status = 'running' AND id NOT IN "
        "(SELECT max(id) FROM label_runs WHERE status = 'running' GROUP BY dataset_id)"
    )
    op.create_index(
        "uq_label_runs_running_dataset",
        "label_runs",
        ["dataset_id"],
        unique=True,
        postgresql_where=_RUNNING,
        sqlite_where=_RUNNING,
    )


def downgrade() -> None:
    """Revert this revision (crashed runs become failed: the old schema has no such status)."""
    op.drop_index(
        "uq_label_runs_running_dataset",
        table_name="label_runs",
        postgresql_where=_RUNNING,
        sqlite_where=_RUNNING,
    )
    op.execute("UPDATE label_runs SET status = 'failed' WHERE status = 'crashed'")
    with op.batch_alter_table("label_runs") as batch:
        batch.drop_constraint(op.f("ck_label_runs_run_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_label_runs_run_status"), _status_check(_OLD_STATUSES)
        )
        batch.drop_column("owner_key")
        batch.drop_column("owner")
        batch.drop_column("heartbeat_at")
        batch.drop_column("status_reason")
