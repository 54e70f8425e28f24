"""index ended jobs whose webhook has no delivery job yet (only jobs with a webhook enter it)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ENDED = "state IN ('completed', 'failed', 'canceled')"


def upgrade() -> None:
    op.create_index(
        "conveyor_jobs_webhook_due",
        "conveyor_jobs",
        ["id"],
        postgresql_where=sa.text(
            f"meta ? 'webhook' AND {_ENDED} AND (meta ->> 'webhook_sent') IS DISTINCT FROM "
            "(state || ':' || CAST(attempt AS text))"
        ),
        sqlite_where=sa.text(
            f"json_extract(meta, '$.webhook') IS NOT NULL AND {_ENDED} AND "
            "json_extract(meta, '$.webhook_sent') IS NOT (state || ':' || attempt)"
        ),
    )


def downgrade() -> None:
    op.drop_index("conveyor_jobs_webhook_due", table_name="conveyor_jobs")
