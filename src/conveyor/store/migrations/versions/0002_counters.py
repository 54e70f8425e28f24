"""counters for metrics; jobs and attempts by finish time

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_counters",
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("job_type", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("le", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "job_type", "queue", "le"),
    )
    with op.batch_alter_table("conveyor_attempts") as batch_op:
        batch_op.create_index("conveyor_attempts_finished", ["finished_at"], unique=False)
    with op.batch_alter_table("conveyor_jobs") as batch_op:
        batch_op.create_index("conveyor_jobs_finished", ["finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("conveyor_jobs") as batch_op:
        batch_op.drop_index("conveyor_jobs_finished")
    with op.batch_alter_table("conveyor_attempts") as batch_op:
        batch_op.drop_index("conveyor_attempts_finished")
    op.drop_table("conveyor_counters")
