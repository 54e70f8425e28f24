"""worker health: the problem a worker reports when it cannot make progress

A worker whose slots are held by threads that outlived their timeout, or whose event loop was
blocked for seconds, says so in its heartbeat (NULL while it is healthy).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conveyor_workers", sa.Column("problem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conveyor_workers") as batch:
        batch.drop_column("problem")
