"""Jobs as maintenance moves them: promote the due, find expired runs and stale queued
jobs, purge the old. Each call is one small transaction, safe to run from many processes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine, Text, and_, delete, select, update

from conveyor.core.states import WAITING, State
from conveyor.store.claims import picked
from conveyor.store.records import ExpiredRun
from conveyor.store.tables import attempts, jobs


class UpkeepStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def promote_due(self, now: datetime, limit: int = 1000) -> list[tuple[str, str]]:
        """Scheduled and retrying jobs whose time has come become queued: (id, queue) each."""
        due = (
            select(jobs.c.id)
            .where(
                and_(
                    jobs.c.state.in_([s.value for s in WAITING]),
                    jobs.c.scheduled_at <= now,
                )
            )
            .order_by(jobs.c.scheduled_at)
            .limit(limit)
        )
        stmt = (
            update(jobs)
            .where(
                and_(
                    picked(due, self.dialect),
                    jobs.c.state.in_([s.value for s in WAITING]),
                )
            )
            .values(state=State.QUEUED.value, updated_at=now)
            .returning(jobs.c.id, jobs.c.queue)
        )
        with self.engine.begin() as conn:
            return [(str(r.id), r.queue) for r in conn.execute(stmt)]

    def expired_runs(self, now: datetime, limit: int = 500) -> list[ExpiredRun]:
        """Running jobs whose lease ran out: their worker died, hung or lost the database."""
        query = (
            select(
                jobs.c.id,
                jobs.c.type,
                jobs.c.queue,
                jobs.c.attempt,
                jobs.c.uncharged,
                jobs.c.max_attempts,
                jobs.c.worker_id,
                jobs.c.started_at,
                jobs.c.cancel_requested,
            )
            .where(and_(jobs.c.state == State.RUNNING.value, jobs.c.lease_expires_at < now))
            .order_by(jobs.c.lease_expires_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            ExpiredRun(
                id=str(r.id),
                type=r.type,
                queue=r.queue,
                attempt=r.attempt,
                charged=r.attempt - r.uncharged,
                max_attempts=r.max_attempts,
                worker_id=r.worker_id,
                started_at=r.started_at,
                cancel_requested=bool(r.cancel_requested),
            )
            for r in rows
        ]

    def stale_queued(
        self, queue: str, before: datetime, limit: int = 1000, after: str | None = None
    ) -> list[str]:
        """Oldest jobs of ``queue`` that have been queued since before ``before`` (with ids
        above ``after`` when given)."""
        conditions = [
            jobs.c.state == State.QUEUED.value,
            jobs.c.queue == queue,
            jobs.c.updated_at < before,
        ]
        if after is not None:
            conditions.append(jobs.c.id > after)
        # PostgreSQL spells the ids itself (thousands per call while a backlog is fed in).
        column = jobs.c.id.cast(Text) if self.dialect == "postgresql" else jobs.c.id
        query = select(column).where(and_(*conditions)).order_by(jobs.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [str(i) for i in conn.execute(query).scalars()]

    def purge(self, states: Sequence[State], finished_before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` jobs in ``states`` that finished before the cut (with their
        attempts); one small transaction per call."""
        old = (
            select(jobs.c.id)
            .where(
                and_(
                    jobs.c.finished_at < finished_before,
                    jobs.c.state.in_([s.value for s in states]),
                )
            )
            .limit(limit)
        )
        with self.engine.begin() as conn:
            ids = [str(i) for i in conn.execute(old).scalars()]
            if not ids:
                return 0
            conn.execute(delete(attempts).where(attempts.c.job_id.in_(ids)))
            return int(conn.execute(delete(jobs).where(jobs.c.id.in_(ids))).rowcount)
