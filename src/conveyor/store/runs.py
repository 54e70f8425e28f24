"""Jobs as workers move them: claim, heartbeat, progress, finish, promote, recover.

Every write after a claim is fenced by (job id, attempt) and ``state = 'running'``: a worker
that lost its lease cannot overwrite what the attempt that replaced it wrote.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Select,
    String,
    Text,
    and_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.outcome import AttemptOutcome
from conveyor.core.sizes import to_json
from conveyor.core.states import WAITING, State
from conveyor.store.errors import rejections
from conveyor.store.records import ClaimedJob, ExpiredRun, Finish, ProgressUpdate
from conveyor.store.tables import attempts, jobs

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
)
_RUNNING = State.RUNNING.value


_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    # -- claim ------------------------------------------------------------------------------

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
            return _claim_pg(
                conn, _PG_CLAIM_IDS, {"ids": "{" + ",".join(wanted) + "}"}, worker_id, now, lease_s
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
                    sql = _PG_CLAIM_NEXT
                    if queue in after:
                        sql, params["after"] = _PG_CLAIM_NEXT_AFTER, after[queue]
                    claimed += _claim_pg(conn, sql, params, worker_id, now, lease_s)
            return claimed
        with self.engine.begin() as conn:
            for queue, count in wanted:
                cond = and_(jobs.c.state == State.QUEUED.value, jobs.c.queue == queue)
                if queue in after:
                    cond = and_(cond, jobs.c.id > after[queue])
                oldest = select(jobs.c.id).where(cond).order_by(jobs.c.id).limit(count)
                claimed += self._claim(conn, self._picked(oldest), worker_id, now, lease_s)
        return claimed

    def _picked(self, ids: Select[Any]) -> ColumnElement[bool]:
        """``jobs.id`` among the rows ``ids`` selects, locking them on PostgreSQL.

        On PostgreSQL the locked pick is materialised first: as a plain ``IN (subquery)``
        the planner may rescan it once per outer row and match far more than its LIMIT.
        """
        if self.dialect != "postgresql":
            return jobs.c.id.in_(ids.scalar_subquery())
        picked = ids.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        return jobs.c.id.in_(select(picked.c.id))

    def _claim(
        self, conn: Connection, which: Any, worker_id: str, now: datetime, lease_s: float
    ) -> list[ClaimedJob]:
        stmt = (
            update(jobs)
            .where(and_(which, jobs.c.state == State.QUEUED.value))
            .values(
                state=_RUNNING,
                attempt=jobs.c.attempt + 1,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=now,
                updated_at=now,
                cancel_requested=False,
            )
            .returning(*_CLAIM_COLUMNS)
        )
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

    # -- while running ----------------------------------------------------------------------

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

    # -- finish -----------------------------------------------------------------------------

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
                if group[0].expired_before is None and self.dialect == "postgresql":
                    accepted += _finish_rows(conn, group)
                    continue
                stmt, params = self._finish_statement(group)
                if group[0].expired_before is None:
                    accepted += int(conn.execute(stmt, params).rowcount)
                    self._record_attempts(conn, group)
                    continue
                # Recoveries race lease renewals: record an attempt only where the update won.
                for finish, one in zip(group, params, strict=True):
                    if conn.execute(stmt, one).rowcount:
                        accepted += 1
                        self._record_attempts(conn, [finish])
        return accepted

    def _finish_statement(self, group: list[Finish]) -> tuple[Any, list[dict[str, Any]]]:
        fenced = [
            jobs.c.id == bindparam("b_id"),
            jobs.c.attempt == bindparam("b_attempt"),
            jobs.c.state == _RUNNING,
        ]
        if group[0].expired_before is not None:
            fenced.append(jobs.c.lease_expires_at < bindparam("b_expired_before"))
        values: dict[str, Any] = {
            "state": bindparam("b_state"),
            "error": bindparam("b_error"),
            "worker_id": None,
            "lease_expires_at": None,
            "cancel_requested": False,
            "updated_at": bindparam("b_finished_at"),
            "progress": func.coalesce(bindparam("b_progress", type_=Float), jobs.c.progress),
            "stage": func.coalesce(bindparam("b_stage", type_=String), jobs.c.stage),
            "message": func.coalesce(bindparam("b_message", type_=Text), jobs.c.message),
        }
        state = group[0].state
        if state is State.COMPLETED:  # the worker stays: it ran the attempt the row records
            values.update(
                result=bindparam("b_result"), progress=100.0, worker_id=bindparam("b_worker_id")
            )
        if state in (State.COMPLETED, State.FAILED, State.CANCELED):
            values["finished_at"] = bindparam("b_finished_at")
        if state is State.RETRYING:
            values["scheduled_at"] = bindparam("b_run_at")
        if not group[0].charges_attempt:
            values["uncharged"] = jobs.c.uncharged + 1
        stmt = update(jobs).where(and_(*fenced)).values(**values)
        params = [
            {
                "b_id": f.job_id,
                "b_attempt": f.attempt,
                "b_state": f.state.value,
                "b_error": f.error.as_dict() if f.error else None,
                "b_result": f.result,
                "b_finished_at": f.finished_at,
                "b_run_at": f.run_at,
                "b_expired_before": f.expired_before,
                "b_progress": f.progress,
                "b_stage": f.stage,
                "b_message": f.message,
                "b_worker_id": f.worker_id,
            }
            for f in group
        ]
        return stmt, params

    def _record_attempts(self, conn: Connection, finishes: Sequence[Finish]) -> None:
        rows = [_attempt_row(f) for f in finishes if not _recorded_by_job_row(f)]
        if not rows:
            return
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        conn.execute(dialect_insert(attempts).on_conflict_do_nothing(), rows)

    # -- maintenance ------------------------------------------------------------------------

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
                    self._picked(due),
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
            .where(and_(jobs.c.state == _RUNNING, jobs.c.lease_expires_at < now))
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


# PostgreSQL claims are sent as plain SQL: the rows come back as text and numbers the
# worker uses as they are (no per-row type processing), the wait computed by the server.
_PG_CLAIM = """
    UPDATE conveyor_jobs
       SET state = 'running', attempt = attempt + 1, worker_id = %(worker_id)s,
           lease_expires_at = %(lease_until)s, started_at = %(now)s, updated_at = %(now)s,
           cancel_requested = false
     WHERE {which} AND state = 'queued'
    RETURNING id::text, type, queue, payload, attempt, attempt - uncharged, max_attempts,
              timeout_s, progress, stage,
              extract(epoch FROM %(now)s - coalesce(scheduled_at, created_at))::float8
"""
_PG_CLAIM_IDS = _PG_CLAIM.format(which="id = ANY(CAST(%(ids)s AS uuid[]))")
# The locked pick is materialised first: as a plain ``IN (subquery)`` the planner may rescan
# it once per outer row and match far more than its LIMIT.
_PG_PICK = """
    WITH picked AS MATERIALIZED (
        SELECT id FROM conveyor_jobs WHERE state = 'queued' AND queue = %(queue)s {after}
        ORDER BY id LIMIT %(count)s FOR UPDATE SKIP LOCKED
    )"""
_PG_CLAIM_NEXT = _PG_PICK.format(after="") + _PG_CLAIM.format(which="id IN (SELECT id FROM picked)")
_PG_CLAIM_NEXT_AFTER = _PG_PICK.format(after="AND id > CAST(%(after)s AS uuid)") + _PG_CLAIM.format(
    which="id IN (SELECT id FROM picked)"
)


def _claim_pg(
    conn: Connection,
    sql: str,
    params: dict[str, Any],
    worker_id: str,
    now: datetime,
    lease_s: float,
) -> list[ClaimedJob]:
    params |= {
        "worker_id": worker_id,
        "now": now,
        "lease_until": now + timedelta(seconds=lease_s),
    }
    rows = sorted(conn.exec_driver_sql(sql, params).all(), key=lambda r: r[0])
    return [
        ClaimedJob(
            id=r[0],
            type=r[1],
            queue=r[2],
            payload=r[3],
            attempt=r[4],
            charged=r[5],
            max_attempts=r[6],
            timeout_s=r[7],
            started_at=now,
            progress=r[8],
            stage=r[9],
            wait_s=r[10],
        )
        for r in rows
    ]


def _groups(finishes: Sequence[Finish]) -> list[list[Finish]]:
    """Finishes that share one statement shape (same target state and fence)."""
    groups: dict[tuple[State, bool, bool], list[Finish]] = {}
    for f in finishes:
        key = (f.state, f.charges_attempt, f.expired_before is not None)
        groups.setdefault(key, []).append(f)
    return list(groups.values())


# PostgreSQL: a batch of finishes as one statement whatever its size — the UPDATE joined to
# the finishes and the INSERT of their attempt rows — instead of two per job. The rows travel
# as one JSON document (encoding it is C code; adapting arrays of values is not).
_FINISH = """
    WITH v AS MATERIALIZED (
        SELECT (e->>0)::uuid AS id, (e->>1)::int AS attempt, e->>2 AS outcome,
               e->>3 AS worker_id, (e->>4)::timestamptz AS started_at,
               (e->>5)::timestamptz AS finished_at, CAST(:state AS text) AS state,
               e->6->'error' AS error, e->6->'result' AS result,
               (e->6->>'run_at')::timestamptz AS run_at, (e->6->>'progress')::float8 AS progress,
               e->6->>'stage' AS stage, e->6->>'message' AS message
        FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS e
    ),
    recorded AS (
        INSERT INTO conveyor_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                       outcome, error_type, error_message, traceback)
        SELECT id, attempt, worker_id, started_at, finished_at, outcome, error->>'type',
               error->>'message', error->>'traceback'
        FROM v WHERE NOT (outcome = 'completed' AND attempt = 1)  -- _recorded_by_job_row
        ON CONFLICT DO NOTHING
    ),
    done AS (
        UPDATE conveyor_jobs AS j SET {sets}
        FROM v WHERE j.id = v.id AND j.attempt = v.attempt AND j.state = 'running'
        RETURNING 1
    )
    SELECT count(*) FROM done
"""


@functools.cache
def _finish_sql(state: State, charges_attempt: bool) -> Any:
    sets = [
        "state = v.state",
        # JSON null, not SQL NULL, for "none": what the JSON column type stores for None.
        "error = coalesce(v.error, 'null'::jsonb)",
        "worker_id = NULL",
        "lease_expires_at = NULL",
        "cancel_requested = false",
        "updated_at = v.finished_at",
        "stage = coalesce(v.stage, j.stage)",
        "message = coalesce(v.message, j.message)",
    ]
    if state is State.COMPLETED:  # the worker stays: it ran the attempt the row records
        sets += ["result = coalesce(v.result, 'null'::jsonb)", "progress = 100.0"]
        sets[2] = "worker_id = v.worker_id"
    else:
        sets.append("progress = coalesce(v.progress, j.progress)")
    if state in (State.COMPLETED, State.FAILED, State.CANCELED):
        sets.append("finished_at = v.finished_at")
    if state is State.RETRYING:
        sets.append("scheduled_at = v.run_at")
    if not charges_attempt:
        sets.append("uncharged = j.uncharged + 1")
    return text(_FINISH.format(sets=", ".join(sets)))


def _recorded_by_job_row(f: Finish) -> bool:
    """A job's first attempt, when it completed, is recorded by the job row alone (worker,
    start, end, outcome): the common case writes no attempt row. A completed job is never
    run again, so nothing overwrites it; ``JobStore.get`` shows it as attempt 1. (The
    PostgreSQL finish states the same rule in SQL, in ``_FINISH``.)"""
    return f.attempt == 1 and f.outcome is AttemptOutcome.COMPLETED


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


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _finish_rows(conn: Connection, group: Sequence[Finish]) -> int:
    """Apply one group of finishes (same state and fence) in one statement; returns how many
    passed the fence. Attempt rows are written for all, fenced or not, once per (job,
    attempt), except where the job row records the attempt (``_recorded_by_job_row``).

    Each finish travels as a JSON array (no keys to encode): id, attempt, outcome, worker,
    start, end, then an object of whatever else it has, or null (a no-op job has nothing).
    """
    first = group[0]
    rows = []
    started, started_iso = None, None  # a claim's jobs share one start: spelt once
    for f in group:
        if f.started_at is not started:
            started, started_iso = f.started_at, _iso(f.started_at)
        more: dict[str, Any] | None = None
        if (
            f.error is not None
            or f.result is not None
            or f.run_at is not None
            or f.progress is not None
            or f.stage is not None
            or f.message is not None
        ):
            more = {
                "error": f.error.as_dict() if f.error else None,
                "result": f.result,
                "run_at": _iso(f.run_at),
                "progress": f.progress,
                "stage": f.stage,
                "message": f.message,
            }
        rows.append(
            (
                f.job_id,
                f.attempt,
                f.outcome.value,
                f.worker_id,
                started_iso,
                f.finished_at.isoformat(),
                more,
            )
        )
    sql = _finish_sql(first.state, first.charges_attempt)
    params = {"rows": to_json(rows), "state": first.state.value}
    return int(conn.execute(sql, params).scalar_one())
