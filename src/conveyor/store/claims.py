"""Claims: queued jobs become running attempts of one worker, under a lease.

A claim is conditional (the job must still be queued), so a stale or repeated hand-off of
an id claims nothing. What a claim writes is ``store.writes.CLAIM``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, Update, and_, select, update

from conveyor.core.states import State
from conveyor.store import pg
from conveyor.store.records import ClaimedJob
from conveyor.store.tables import jobs
from conveyor.store.writes import CLAIM, sa_values

_CLAIM_COLUMNS = (
    jobs.c.id,
    jobs.c.type,
    jobs.c.queue,
    jobs.c.payload,
    jobs.c.attempt,
    jobs.c.uncharged,
    jobs.c.max_attempts,
    jobs.c.timeout_s,
    jobs.c.progress,
    jobs.c.stage,
    jobs.c.scheduled_at,
    jobs.c.created_at,
    jobs.c.meta,  # the enqueue's trace context, for the attempt's span
)

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


class ClaimStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def claim_ids(
        self, ids: Sequence[str], worker_id: str, now: datetime, lease_s: float
    ) -> list[ClaimedJob]:
        """Claim the given queued jobs; ids that are not queued (stale hand-offs) are skipped."""
        if not ids:
            return []
        wanted = [i for i in ids if _UUID_TEXT.match(i)]  # a malformed entry must not fail the rest
        if not wanted:
            return []
        if self.dialect != "postgresql":
            with self.engine.begin() as conn:
                return self._claim(conn, jobs.c.id.in_(wanted), worker_id, now, lease_s)
        # One array parameter, not one bound value per id; and one statement, atomic by
        # itself, so it is sent without BEGIN/COMMIT round trips.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return pg.claim(
                conn, pg.CLAIM_IDS, {"ids": "{" + ",".join(wanted) + "}"}, worker_id, now, lease_s
            )

    def claim_next(
        self,
        counts: Mapping[str, int],
        worker_id: str,
        now: datetime,
        lease_s: float,
        after: Mapping[str, str] | None = None,
    ) -> list[ClaimedJob]:
        """Claim up to ``counts[queue]`` of the oldest queued jobs of each queue; with
        ``after[queue]``, the oldest after that id (a keyset cursor past the jobs already
        claimed, which a scan from the start would step over until the next vacuum)."""
        after = after or {}
        wanted = [(q, n) for q, n in counts.items() if n > 0]
        claimed: list[ClaimedJob] = []
        if self.dialect == "postgresql":
            # Each claim is one atomic statement: no BEGIN/COMMIT round trips around it.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for queue, count in wanted:
                    params: dict[str, Any] = {"queue": queue, "count": count}
                    sql = pg.CLAIM_NEXT
                    if queue in after:
                        sql, params["after"] = pg.CLAIM_NEXT_AFTER, after[queue]
                    claimed += pg.claim(conn, sql, params, worker_id, now, lease_s)
            return claimed
        with self.engine.begin() as conn:
            for queue, count in wanted:
                cond = and_(jobs.c.state == State.QUEUED.value, jobs.c.queue == queue)
                if queue in after:
                    cond = and_(cond, jobs.c.id > after[queue])
                oldest = select(jobs.c.id).where(cond).order_by(jobs.c.id).limit(count)
                claimed += self._claim(conn, picked(oldest, self.dialect), worker_id, now, lease_s)
        return claimed

    def _claim(
        self, conn: Connection, which: Any, worker_id: str, now: datetime, lease_s: float
    ) -> list[ClaimedJob]:
        stmt = claim_statement(which, worker_id, now, lease_s)
        rows = sorted(conn.execute(stmt).all(), key=lambda r: str(r.id))
        return [
            ClaimedJob(
                id=str(r.id),
                type=r.type,
                queue=r.queue,
                payload=r.payload,
                attempt=r.attempt,
                charged=r.attempt - r.uncharged,
                max_attempts=r.max_attempts,
                timeout_s=r.timeout_s,
                started_at=now,
                progress=r.progress,
                stage=r.stage,
                wait_s=(now - (r.scheduled_at or r.created_at)).total_seconds(),
                meta=r.meta,
            )
            for r in rows
        ]

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids exist at all (a not-yet-committed enqueue does not)."""
        if not ids:
            return set()
        with self.engine.connect() as conn:
            return {
                str(i)
                for i in conn.execute(select(jobs.c.id).where(jobs.c.id.in_(list(ids)))).scalars()
            }


def claim_statement(which: Any, worker_id: str, now: datetime, lease_s: float) -> Update:
    """The claim of the queued jobs among ``which``, in SQLAlchemy (PostgreSQL's is raw)."""
    given = {"worker_id": worker_id, "lease_until": now + timedelta(seconds=lease_s), "now": now}
    return (
        update(jobs)
        .where(and_(which, jobs.c.state == State.QUEUED.value))
        .values(sa_values(CLAIM, lambda _, field: given[field]))
        .returning(*_CLAIM_COLUMNS)
    )


def picked(ids: Select[Any], dialect: str) -> ColumnElement[bool]:
    """``jobs.id`` among the rows ``ids`` selects, locking them on PostgreSQL.

    On PostgreSQL the locked pick is materialised first: as a plain ``IN (subquery)``
    the planner may rescan it once per outer row and match far more than its LIMIT.
    """
    if dialect != "postgresql":
        return jobs.c.id.in_(ids.scalar_subquery())
    picks = ids.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
    return jobs.c.id.in_(select(picks.c.id))
