"""Jobs as their workers move them while they run: lease renewals, cancel requests,
progress, and the end of each attempt.

Every write after a claim is fenced by (job id, attempt) and the job being running: a worker
that lost its lease cannot overwrite what the attempt that replaced it wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Update,
    and_,
    bindparam,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.states import State
from conveyor.store import pg
from conveyor.store.errors import rejections
from conveyor.store.notify import WAKE_CHANNEL
from conveyor.store.records import Finish, ProgressUpdate
from conveyor.store.tables import attempts, jobs
from conveyor.store.writes import RELEASE, end_columns, recorded_by_job_row, sa_values

_RUNNING = State.RUNNING.value


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def renew_leases(
        self, worker_id: str, runs: Sequence[tuple[str, int]], now: datetime, lease_s: float
    ) -> int:
        """Extend the leases of this worker's runs; returns how many it still holds."""
        if not runs:
            return 0
        stmt = (
            update(jobs)
            .where(
                and_(
                    jobs.c.id == bindparam("b_id"),
                    jobs.c.attempt == bindparam("b_attempt"),
                    jobs.c.state == _RUNNING,
                )
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_s))
        )
        with self.engine.begin() as conn:
            result = conn.execute(stmt, [{"b_id": i, "b_attempt": a} for i, a in runs])
        return int(result.rowcount)

    def release(
        self, worker_id: str, runs: Sequence[tuple[str, int]], now: datetime
    ) -> list[tuple[str, str]]:
        """Hand back jobs this worker claimed ahead and never started: queued again, no
        attempt charged and none recorded (``store.writes.RELEASE``), idle workers woken on
        PostgreSQL. Returns (queue, job id) of those handed back; one this attempt no longer
        owns is left alone."""
        if not runs:
            return []
        stmt = (
            update(jobs)
            .where(
                and_(
                    tuple_(jobs.c.id, jobs.c.attempt).in_(list(runs)),
                    jobs.c.state == _RUNNING,
                    jobs.c.worker_id == worker_id,
                )
            )
            .values(sa_values(RELEASE, lambda _, field: {"now": now}[field]))
            .returning(jobs.c.queue, jobs.c.id)
        )
        with self.engine.begin() as conn:
            released = [(queue, str(job_id)) for queue, job_id in conn.execute(stmt).all()]
            if self.dialect == "postgresql":
                for queue in sorted({queue for queue, _ in released}):
                    conn.execute(pg.NOTIFY, {"channel": WAKE_CHANNEL, "payload": queue})
        return released

    def cancel_requests(self, runs: Sequence[tuple[str, int]]) -> list[str]:
        """Ids among these runs that were asked to cancel, or that this attempt no longer owns."""
        if not runs:
            return []
        wanted = dict(runs)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.attempt, jobs.c.state, jobs.c.cancel_requested).where(
                    jobs.c.id.in_(list(wanted))
                )
            ).all()
        return [
            str(r.id)
            for r in rows
            if r.cancel_requested or r.state != _RUNNING or r.attempt != wanted[str(r.id)]
        ]

    @rejections
    def save_progress(self, updates: Sequence[ProgressUpdate], now: datetime) -> int:
        if not updates:
            return 0
        stmt = (
            update(jobs)
            .where(
                and_(
                    jobs.c.id == bindparam("b_id"),
                    jobs.c.attempt == bindparam("b_attempt"),
                    jobs.c.state == _RUNNING,
                )
            )
            .values(
                progress=bindparam("b_progress"),
                stage=bindparam("b_stage"),
                message=bindparam("b_message"),
                updated_at=now,
            )
        )
        params = [
            {
                "b_id": u.job_id,
                "b_attempt": u.attempt,
                "b_progress": u.progress,
                "b_stage": u.stage,
                "b_message": u.message,
            }
            for u in updates
        ]
        with self.engine.begin() as conn:
            return int(conn.execute(stmt, params).rowcount)

    @rejections
    def finish(self, finishes: Sequence[Finish]) -> int:
        """Apply ended attempts in one transaction; returns how many passed the fence.

        Attempt rows are written once per (job, attempt): repeating a finish is harmless.
        """
        if not finishes:
            return 0
        accepted = 0
        with self.engine.begin() as conn:
            for group in _groups(finishes):
                first = group[0]
                if first.expired_before is None and self.dialect == "postgresql":
                    accepted += pg.finish_rows(conn, group)
                    continue
                stmt = finish_statement(
                    first.state, first.charges_attempt, first.expired_before is not None
                )
                params = [_finish_params(f) for f in group]
                if first.expired_before is None:
                    accepted += int(conn.execute(stmt, params).rowcount)
                    self._record_attempts(conn, group)
                    continue
                # Recoveries race lease renewals: record an attempt only where the update won.
                for finish, one in zip(group, params, strict=True):
                    if conn.execute(stmt, one).rowcount:
                        accepted += 1
                        self._record_attempts(conn, [finish])
        return accepted

    def _record_attempts(self, conn: Connection, finishes: Sequence[Finish]) -> None:
        rows = [_attempt_row(f) for f in finishes if not recorded_by_job_row(f.attempt, f.outcome)]
        if not rows:
            return
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(attempts).on_conflict_do_nothing(), rows)


@functools.cache
def finish_statement(state: State, charges_attempt: bool, recovery: bool) -> Update:
    """The fenced end of one attempt in ``state``, in SQLAlchemy (SQLite, and recoveries on
    PostgreSQL: ``recovery`` also requires the lease still expired); parameters are
    ``_finish_params``."""
    fenced = [
        jobs.c.id == bindparam("b_id"),
        jobs.c.attempt == bindparam("b_attempt"),
        jobs.c.state == _RUNNING,
    ]
    if recovery:
        fenced.append(jobs.c.lease_expires_at < bindparam("b_expired_before"))
    values = sa_values(end_columns(state, charges_attempt), _bound)
    return update(jobs).where(and_(*fenced)).values(values)


def _bound(column: Column[Any], field: str) -> Any:
    return bindparam(f"b_{field}", type_=column.type)


def _finish_params(f: Finish) -> dict[str, Any]:
    return {
        "b_id": f.job_id,
        "b_attempt": f.attempt,
        "b_state": f.state.value,
        "b_error": f.error.as_dict() if f.error else None,
        "b_result": f.result,
        "b_started_at": f.started_at,
        "b_finished_at": f.finished_at,
        "b_run_at": f.run_at,
        "b_expired_before": f.expired_before,
        "b_progress": f.progress,
        "b_stage": f.stage,
        "b_message": f.message,
        "b_worker_id": f.worker_id,
    }


def _groups(finishes: Sequence[Finish]) -> list[list[Finish]]:
    """Finishes that share one statement shape (same target state and fence)."""
    groups: dict[tuple[State, bool, bool], list[Finish]] = {}
    for f in finishes:
        key = (f.state, f.charges_attempt, f.expired_before is not None)
        groups.setdefault(key, []).append(f)
    return list(groups.values())


def _attempt_row(f: Finish) -> dict[str, Any]:
    return {
        "job_id": f.job_id,
        "attempt": f.attempt,
        "worker_id": f.worker_id,
        "started_at": f.started_at,
        "finished_at": f.finished_at,
        "outcome": f.outcome.value,
        "error_type": f.error.type if f.error else None,
        "error_message": f.error.message if f.error else None,
        "traceback": f.error.traceback if f.error else None,
    }
