"""Operational views: queue overviews and the counters behind /metrics."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.states import ACTIVE, State
from conveyor.store.errors import translate_errors
from conveyor.store.tables import counters, jobs

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
        """Per queue: active counts by state, oldest queued age, the last minute's work."""
        queues: dict[str, dict[str, Any]] = {}

        def entry(queue: str) -> dict[str, Any]:
            return queues.setdefault(queue, {"counts": {s.value: 0 for s in ACTIVE}})

        active = (
            select(jobs.c.queue, jobs.c.state, func.count())
            .where(jobs.c.state.in_([s.value for s in ACTIVE]))
            .group_by(jobs.c.queue, jobs.c.state)
        )
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
            for queue, state, count in conn.execute(active):
                entry(queue)["counts"][state] = int(count)
            finished: dict[str, dict[str, Any]] = {}
            for queue, state, count, run_s, wait_s in conn.execute(recent):
                e = entry(queue)
                f = finished.setdefault(queue, {"n": 0, "run": 0.0, "wait": 0.0})
                e[f"{state}_last_minute"] = int(count)
                f["n"] += int(count)
                f["run"] += float(run_s or 0) * int(count)
                f["wait"] += float(wait_s or 0) * int(count)
            for queue, e in queues.items():
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

    def _seconds(self, start: Any, end: Any) -> Any:
        if self.dialect == "postgresql":
            return func.extract("epoch", end - start)
        return (func.julianday(end) - func.julianday(start)) * 86400.0

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
