"""cheaper hot-path writes: attempts without a foreign key check or a finish-time index,
jobs without the lease index

Every finish inserts one attempt row per job. The foreign key made PostgreSQL look up and
lock the job row once per attempt row (the job was just updated in the same statement), and
no query reads attempts by finish time. Retention deletes a job's attempts with the job.

Every claim added an entry to the lease index, and every lease renewal rewrote the row with
its index entries (an indexed column changed). Expired leases are found among the running
jobs through the state index instead: running jobs are few (at most the workers'
concurrency), and renewals can now be heap-only updates.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite's foreign key has no name of its own; batch mode finds it under this convention.
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
_SQLITE_FK = "fk_conveyor_attempts_job_id_conveyor_jobs"


def upgrade() -> None:
    op.drop_index("conveyor_jobs_lease", table_name="conveyor_jobs")
    op.drop_index("conveyor_attempts_finished", table_name="conveyor_attempts")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("conveyor_attempts_job_id_fkey", "conveyor_attempts", type_="foreignkey")
        return
    foreign_keys = sa.inspect(op.get_bind()).get_foreign_keys("conveyor_attempts")
    with op.batch_alter_table("conveyor_attempts", naming_convention=_NAMES) as batch_op:
        for fk in foreign_keys:  # unnamed when made by 0001, named when by a downgrade
            batch_op.drop_constraint(fk["name"] or _SQLITE_FK, type_="foreignkey")


def downgrade() -> None:
    name = "conveyor_attempts_job_id_fkey"
    with op.batch_alter_table("conveyor_attempts") as batch_op:
        batch_op.create_foreign_key(name, "conveyor_jobs", ["job_id"], ["id"], ondelete="CASCADE")
        batch_op.create_index("conveyor_attempts_finished", ["finished_at"], unique=False)
    op.create_index(
        "conveyor_jobs_lease",
        "conveyor_jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("state = 'running'"),
        sqlite_where=sa.text("state = 'running'"),
    )
