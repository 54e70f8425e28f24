"""index only finished jobs by finished_at (queued and running rows skip it)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("conveyor_jobs_finished", table_name="conveyor_jobs")
    op.create_index(
        "conveyor_jobs_finished",
        "conveyor_jobs",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("conveyor_jobs_finished", table_name="conveyor_jobs")
    op.create_index("conveyor_jobs_finished", "conveyor_jobs", ["finished_at"])
