"""schedules and their fires

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from conveyor.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "conveyor_schedules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("job_type", sa.String(length=200), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("queue", sa.String(length=200), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("every_s", sa.Float(), nullable=True),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("overlap", sa.String(length=20), nullable=False),
        sa.Column("catch_up", sa.String(length=20), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_tick_at", UTCDateTime(), nullable=True),
        sa.Column("next_tick_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("conveyor_schedules") as batch_op:
        batch_op.create_index("conveyor_schedules_next", ["next_tick_at"], unique=False)
    op.create_table(
        "conveyor_schedule_fires",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("schedule", sa.String(length=200), nullable=False),
        sa.Column("tick_at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("job_id", sa.Uuid(as_uuid=False), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["schedule"], ["conveyor_schedules.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule", "tick_at", name="conveyor_schedule_fires_tick"),
    )


def downgrade() -> None:
    op.drop_table("conveyor_schedule_fires")
    with op.batch_alter_table("conveyor_schedules") as batch_op:
        batch_op.drop_index("conveyor_schedules_next")
    op.drop_table("conveyor_schedules")
