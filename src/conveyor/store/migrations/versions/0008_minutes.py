"""minutes: the last day's outcomes, wait and run histograms and depths per minute and queue

Workers add to it with their counters; the reconciler sets the depth gauges and deletes rows
older than a day. The dashboard's charts of the last hour read it, not the jobs table.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.tables import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_minutes",
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=False),
        sa.Column("le", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "metric", "queue", "le"),
    )


def downgrade() -> None:
    op.drop_table("conveyor_minutes")
