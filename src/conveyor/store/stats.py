"""Operational views: queue overviews and the counters behind /metrics."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.states import ACTIVE, State
from conveyor.store.errors import translate_errors
from conveyor.store.tables import counters, jobs

#: Jobs a queue overview reads per state before it estimates instead of counting.
COUNT_CAP = 10_000

# Every queue name in the table, one index probe per name (a loose index scan), not a scan.
_ALL_QUEUES = text(
    """
    WITH RECURSIVE q(queue) AS (
        (SELECT queue FROM conveyor_jobs ORDER BY queue LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue FROM conveyor_jobs j WHERE j.queue > q.queue
                ORDER BY j.queue LIMIT 1)
        FROM q WHERE q.queue IS NOT NULL
    )
    SELECT queue FROM q WHERE queue IS NOT NULL
    """
)

#: (metric, job type, queue, histogram bound or "") -> amount to add
CounterKey = tuple[str, str, str, str]


class StatsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def add(self, deltas: Mapping[CounterKey, float]) -> None:
        """Add to counters in one statement (created on first use)."""
        if not deltas:
            return
        rows = [
            {"metric": m, "job_type": t, "queue": q, "le": le, "value": v}
            for (m, t, q, le), v in sorted(deltas.items())
        ]
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(counters)
        stmt = stmt.on_conflict_do_update(
            index_elements=["metric", "job_type", "queue", "le"],
            set_={"value": counters.c.value + stmt.excluded.value},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)

    @translate_errors
    def counters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(counters))]

    @translate_errors
    def queue_overview(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Per queue: active counts by state (``estimated`` lists those above COUNT_CAP, from
        the planner's statistics), oldest queued age, the last minute's work."""
        queues: dict[str, dict[str, Any]] = {}

        def entry(queue: str) -> dict[str, Any]:
            return queues.setdefault(queue, {"counts": {s.value: 0 for s in ACTIVE}})

        since = now - timedelta(minutes=1)
        recent = (
            select(
                jobs.c.queue,
                jobs.c.state,
                func.count(),
                func.avg(self._seconds(jobs.c.started_at, jobs.c.finished_at)),
                func.avg(
                    self._seconds(
                        func.coalesce(jobs.c.scheduled_at, jobs.c.created_at), jobs.c.started_at
                    )
                ),
            )
            .where(
                and_(
                    jobs.c.finished_at >= since,
                    jobs.c.state.in_([State.COMPLETED.value, State.FAILED.value]),
                )
            )
            .group_by(jobs.c.queue, jobs.c.state)
        )
        with self.engine.connect() as conn:
            for state in sorted(ACTIVE):
                counts, estimated = self._bounded_counts(conn, state)
                for queue, count in counts.items():
                    e = entry(queue)
                    e["counts"][state.value] = count
                    if estimated:
                        e.setdefault("estimated", []).append(state.value)
            finished: dict[str, dict[str, Any]] = {}
            for queue, state, count, run_s, wait_s in conn.execute(recent):
                e = entry(queue)
                f = finished.setdefault(queue, {"n": 0, "run": 0.0, "wait": 0.0})
                e[f"{state}_last_minute"] = int(count)
                f["n"] += int(count)
                f["run"] += float(run_s or 0) * int(count)
                f["wait"] += float(wait_s or 0) * int(count)
            for queue, e in queues.items():
                e.setdefault("estimated", [])
                e.setdefault("completed_last_minute", 0)
                e.setdefault("failed_last_minute", 0)
                done = finished.get(queue)
                e["mean_run_seconds"] = round(done["run"] / done["n"], 6) if done else None
                e["mean_wait_seconds"] = round(done["wait"] / done["n"], 6) if done else None
                oldest = conn.execute(
                    select(jobs.c.created_at)
                    .where(and_(jobs.c.state == State.QUEUED.value, jobs.c.queue == queue))
                    .order_by(jobs.c.id)
                    .limit(1)
                ).scalar()
                e["oldest_queued_age_seconds"] = (
                    round((now - oldest).total_seconds(), 3) if oldest else None
                )
        return dict(sorted(queues.items()))

    def _bounded_counts(self, conn: Connection, state: State) -> tuple[dict[str, int], bool]:
        """Jobs in ``state`` per queue, reading at most COUNT_CAP index entries: exact below
        the cap; above it (PostgreSQL), the planner's estimate for each queue seen, so that a
        backlog of millions costs what a thousand does. Returns (counts, estimated)."""
        sample = (
            select(jobs.c.queue)
            .where(jobs.c.state == state.value)
            .limit(COUNT_CAP if self.dialect == "postgresql" else None)
            .subquery()
        )
        counts = {
            q: int(n)
            for q, n in conn.execute(select(sample.c.queue, func.count()).group_by(sample.c.queue))
        }
        if sum(counts.values()) < COUNT_CAP or self.dialect != "postgresql":
            return counts, False
        for queue in conn.execute(_ALL_QUEUES).scalars():
            if queue not in counts:  # not in the sample: count it, again at most COUNT_CAP
                bounded = (
                    select(jobs.c.id)
                    .where(jobs.c.state == state.value, jobs.c.queue == queue)
                    .limit(COUNT_CAP)
                    .subquery()
                )
                n = conn.execute(select(func.count()).select_from(bounded)).scalar_one()
                if n < COUNT_CAP:
                    if n:
                        counts[queue] = int(n)
                    continue
            plan = conn.execute(
                text(
                    "EXPLAIN (FORMAT JSON) SELECT 1 FROM conveyor_jobs "
                    "WHERE state = :state AND queue = :queue"
                ),
                {"state": state.value, "queue": queue},
            ).scalar_one()
            planned = int(plan[0]["Plan"]["Plan Rows"]) if isinstance(plan, list) else 0
            counts[queue] = max(counts.get(queue, 0), planned)
        return counts, True

    def _seconds(self, start: Any, end: Any) -> Any:
        if self.dialect == "postgresql":
            return func.extract("epoch", end - start)
        return (func.julianday(end) - func.julianday(start)) * 86400.0

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
