"""Operational views: queue overviews and the counters behind /metrics.

Every view costs a fixed number of statements whatever the number of queues (grouped
statements and index probes, never one statement per queue), counts at most COUNT_CAP jobs
per state, and reports at most QUEUE_LIMIT queues (COUNTER_PAIRS_LIMIT (job type, queue)
pairs for counters). On PostgreSQL its statements are canceled after
VIEW_STATEMENT_TIMEOUT_MS, so a view holds one pooled connection for a bounded time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from conveyor.core import metrics
from conveyor.core.errors import DatabaseUnavailable
from conveyor.core.names import OTHER_QUEUE
from conveyor.core.states import ACTIVE, State
from conveyor.store import history as per_minute
from conveyor.store.errors import translate_errors
from conveyor.store.history import HISTORY_QUEUE_LIMIT, History
from conveyor.store.tables import counters, jobs

#: Jobs a queue overview reads per state before it estimates instead of counting.
COUNT_CAP = 10_000
#: Most queues a queue overview reports: those with the most active jobs, then by name.
QUEUE_LIMIT = 1_000
#: Most (job type, queue) pairs, first by name, whose counters /metrics reports as they are;
#: the counters of later pairs add up under the queue OTHER_QUEUE.
COUNTER_PAIRS_LIMIT = 200
#: On PostgreSQL, a statement of a view is canceled after this long.
VIEW_STATEMENT_TIMEOUT_MS = 5_000
_QUERY_CANCELED = "57014"  # SQLSTATE of a statement canceled by statement_timeout

# The first names of queues with queued jobs, one probe of the claim index per name (a
# loose index scan), not a scan of the backlog.
_QUEUED_QUEUES = text(
    f"""
    WITH RECURSIVE q(queue) AS (
        (SELECT queue FROM {jobs.name} WHERE state = :queued ORDER BY queue LIMIT 1)
        UNION ALL
        SELECT (SELECT j.queue FROM {jobs.name} j WHERE j.state = :queued
                AND j.queue > q.queue ORDER BY j.queue LIMIT 1)
        FROM q WHERE q.queue IS NOT NULL
    )
    SELECT queue FROM q WHERE queue IS NOT NULL LIMIT :n
    """
)

# The queues table statistics list as the most common: the biggest, whatever their names.
_COMMON_QUEUES = text(
    "SELECT unnest(most_common_vals::text::text[]) FROM pg_stats"
    " WHERE schemaname = current_schema() AND tablename = :table AND attname = 'queue'"
)

# For the transaction of one view: a statement timeout, and no parallel workers (the view
# stays on its one connection, and EXPLAIN shows one plan node per queue).
_VIEW_SETTINGS = text(
    "SELECT set_config('statement_timeout', :timeout, true),"
    " set_config('max_parallel_workers_per_gather', '0', true)"
)

_DEPTH_GAUGES = {metrics.QUEUED_GAUGE: State.QUEUED, metrics.RUNNING_GAUGE: State.RUNNING}

#: (metric, job type, queue, histogram bound or "") -> amount to add
CounterKey = tuple[str, str, str, str]
#: state -> queue -> jobs
Counts = dict[State, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Overview:
    """Queues by name with their figures; ``truncated`` when more had something to show."""

    queues: dict[str, dict[str, Any]]
    truncated: bool


@dataclass(frozen=True, slots=True)
class CounterRows:
    """Counter rows; ``folded`` when some pairs were added up under OTHER_QUEUE."""

    rows: list[dict[str, Any]]
    folded: bool


class StatsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def add(self, deltas: Mapping[CounterKey, float], at: datetime | None = None) -> None:
        """Add to counters in one statement (created on first use); given ``at`` (the
        database's time), also add the history's metrics to that minute's rows, per queue,
        in one more statement of the same transaction."""
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
            if at is not None:
                per_minute.upsert(conn, metrics.minute_of(at), metrics.per_queue(deltas), add=True)

    # -- history ----------------------------------------------------------------------------

    @translate_errors
    def history(self, now: datetime, minutes: int = 60, queue: str | None = None) -> History:
        """Per minute for the ``minutes`` minutes up to ``now``'s, in total and per queue
        (only ``queue`` if given; else at most HISTORY_QUEUE_LIMIT, the busiest): two
        statements on ``conveyor_minutes``, none on the jobs table."""
        with self._view() as conn:
            return per_minute.read(conn, now, minutes, queue, HISTORY_QUEUE_LIMIT)

    @translate_errors
    def record_depths(self, now: datetime) -> dict[str, dict[State, int]]:
        """Set ``now``'s minute's queued and running gauges of each queue, counted as the
        queue overview counts them (exact up to COUNT_CAP per state, estimated above: good
        enough for a chart); returns the depths it recorded."""
        depths = self.depths()
        gauges = {
            (gauge, q, ""): float(counts[state])
            for q, counts in depths.items()
            for gauge, state in _DEPTH_GAUGES.items()
        }
        gauges[(metrics.SAMPLED_GAUGE, "", "")] = 1.0
        with self.engine.begin() as conn:
            per_minute.upsert(conn, metrics.minute_of(now), gauges, add=False)
        return depths

    @translate_errors
    def purge_minutes(self, before: datetime, max_minutes: int) -> int:
        """Delete history rows of minutes before ``before``, at most ``max_minutes`` minutes
        of them (the oldest); returns how many rows."""
        with self.engine.begin() as conn:
            return per_minute.purge(conn, before, max_minutes)

    def depths(self, limit: int | None = None) -> dict[str, dict[State, int]]:
        """Queued and running jobs of each queue that has some, counted like the queue
        overview's (at most ``limit``, QUEUE_LIMIT, queues: the busiest)."""
        limit = QUEUE_LIMIT if limit is None else limit
        with self._view() as conn:
            sampled = {state: self._sample(conn, state) for state in _DEPTH_GAUGES.values()}
            full = {s for s, counts in sampled.items() if self._is_full(counts)}
            seen = {q for counts in sampled.values() for q in counts}
            common = self._common_queues(conn) if full else set()
            seen |= common
            queued = set(sampled[State.QUEUED])
            if State.QUEUED in full:  # queues whose queued jobs are all newer than the sample
                queued.update(self._queued_queues(conn, limit + 1))
            seen |= queued
            kept = _busiest(seen, sampled, common, limit)
            estimates = {
                state: self._estimates(
                    conn, state, [q for q in kept if state is not State.QUEUED or q in queued]
                )
                for state in sorted(full)
            }
        return {
            q: {s: max(n.get(q, 0), estimates.get(s, {}).get(q, 0)) for s, n in sampled.items()}
            for q in kept
        }

    # -- counters ---------------------------------------------------------------------------

    @translate_errors
    def counters(self, max_pairs: int | None = None) -> CounterRows:
        """Every counter, in two statements: the pairs (job type, queue) after the first
        ``max_pairs`` (COUNTER_PAIRS_LIMIT) by name add up under the queue OTHER_QUEUE."""
        with self._view() as conn:
            last = self._last_kept_pair(
                conn, COUNTER_PAIRS_LIMIT if max_pairs is None else max_pairs
            )
            rows = [dict(r._mapping) for r in conn.execute(_summed_counters(last))]
        return CounterRows(rows, folded=last is not None)

    def _last_kept_pair(self, conn: Connection, max_pairs: int) -> tuple[str, str] | None:
        """The ``max_pairs``-th (job type, queue) pair by name, if any pair comes after it."""
        pairs = (
            select(counters.c.job_type, counters.c.queue)
            .distinct()
            .order_by(counters.c.job_type, counters.c.queue)
            .offset(max(max_pairs, 1) - 1)
            .limit(2)
        )
        found = conn.execute(pairs).all()
        return (found[0][0], found[0][1]) if len(found) == 2 else None

    # -- queue overview ---------------------------------------------------------------------

    @translate_errors
    def queue_overview(self, now: datetime, limit: int | None = None) -> Overview:
        """Per queue: active counts by state (``estimated`` lists those above COUNT_CAP, from
        the planner's statistics), oldest queued age, the last minute's work. At most
        ``limit`` (QUEUE_LIMIT) queues: those with the most active jobs, then by name (when a
        state is above COUNT_CAP, the queues table statistics name as biggest come first)."""
        limit = QUEUE_LIMIT if limit is None else limit
        with self._view() as conn:
            sampled = {state: self._sample(conn, state) for state in sorted(ACTIVE)}
            full = {s for s, counts in sampled.items() if self._is_full(counts)}
            recent = self._recent(conn, now)
            seen = {*recent, *(q for counts in sampled.values() for q in counts)}
            common = self._common_queues(conn) if full else set()
            seen |= common
            if State.QUEUED in full:  # queues whose queued jobs are all newer than the sample
                seen.update(self._queued_queues(conn, limit + 1))
            kept = _busiest(seen, sampled, common, limit)
            oldest = self._oldest_queued(conn, kept)
            estimates = {
                state: self._estimates(
                    conn, state, [q for q in kept if state is not State.QUEUED or q in oldest]
                )
                for state in sorted(full)
            }
        queues = {
            q: _figures(q, sampled, estimates, recent.get(q), oldest.get(q), now)
            for q in sorted(kept)
        }
        return Overview(queues, truncated=len(seen) > limit)

    def _common_queues(self, conn: Connection) -> set[str]:
        """The biggest queues by table statistics (the last ANALYZE), whatever their names."""
        return set(conn.execute(_COMMON_QUEUES, {"table": jobs.name}).scalars())

    def _queued_queues(self, conn: Connection, n: int) -> list[str]:
        """The first ``n`` names of queues with queued jobs (a loose scan of the claim index)."""
        params = {"queued": State.QUEUED.value, "n": n}
        return list(conn.execute(_QUEUED_QUEUES, params).scalars())

    def _sample(self, conn: Connection, state: State) -> dict[str, int]:
        """Jobs in ``state`` per queue among the first COUNT_CAP (all of them on SQLite)."""
        sample = (
            select(jobs.c.queue)
            .where(jobs.c.state == state.value)
            .limit(COUNT_CAP if self.dialect == "postgresql" else None)
            .subquery()
        )
        grouped = select(sample.c.queue, func.count()).group_by(sample.c.queue)
        return {q: int(n) for q, n in conn.execute(grouped)}

    def _is_full(self, counts: dict[str, int]) -> bool:
        return self.dialect == "postgresql" and sum(counts.values()) >= COUNT_CAP

    def _recent(self, conn: Connection, now: datetime) -> dict[str, dict[str, Any]]:
        """The last minute's finishes per queue, in one grouped statement."""
        query = (
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
                    jobs.c.finished_at >= now - timedelta(minutes=1),
                    jobs.c.state.in_([State.COMPLETED.value, State.FAILED.value]),
                )
            )
            .group_by(jobs.c.queue, jobs.c.state)
        )
        recent: dict[str, dict[str, Any]] = {}
        for queue, state, count, run_s, wait_s in conn.execute(query):
            r = recent.setdefault(queue, {"n": 0, "run": 0.0, "wait": 0.0})
            r[f"{state}_last_minute"] = int(count)
            r["n"] += int(count)
            r["run"] += float(run_s or 0) * int(count)
            r["wait"] += float(wait_s or 0) * int(count)
        return recent

    def _oldest_queued(self, conn: Connection, queues: Sequence[str]) -> dict[str, datetime]:
        """When each queue's oldest queued job was created, in one statement: one probe of
        the claim index per queue. Queues without queued jobs are left out."""
        if not queues:
            return {}
        each = func.json_array_elements_text if self.dialect == "postgresql" else func.json_each
        names = each(bindparam("queues", list(queues), type_=JSON)).table_valued("value")
        names = names.alias("names")
        first = (
            select(jobs.c.created_at)
            .where(jobs.c.state == State.QUEUED.value, jobs.c.queue == names.c.value)
            .order_by(jobs.c.id)
            .limit(1)
            .scalar_subquery()
        )
        return {q: at for q, at in conn.execute(select(names.c.value, first)) if at is not None}

    def _estimates(self, conn: Connection, state: State, queues: Sequence[str]) -> dict[str, int]:
        """The planner's estimate of jobs in ``state`` for each queue, from one EXPLAIN (one
        arm per queue): table statistics, no rows read. PostgreSQL only."""
        if not queues:
            return {}
        arms = " UNION ALL ".join(
            f"SELECT 1 FROM {jobs.name} WHERE state = :state AND queue = :q{i}"
            for i in range(len(queues))
        )
        params = {"state": state.value, **{f"q{i}": q for i, q in enumerate(queues)}}
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {arms}"), params).scalar_one()
        top = plan[0]["Plan"] if isinstance(plan, list) else {}
        nodes = top.get("Plans", []) if top.get("Node Type") == "Append" else [top]
        if len(nodes) != len(queues):
            return {}
        return {q: int(node["Plan Rows"]) for q, node in zip(queues, nodes, strict=True)}

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _view(self) -> Iterator[Connection]:
        """A connection for one view; on PostgreSQL its statements are canceled after
        VIEW_STATEMENT_TIMEOUT_MS (DatabaseUnavailable) and run without parallel workers."""
        timeout_ms = int(VIEW_STATEMENT_TIMEOUT_MS)
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(_VIEW_SETTINGS, {"timeout": str(timeout_ms)})
            try:
                yield conn
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != _QUERY_CANCELED:
                    raise
                raise DatabaseUnavailable(
                    f"the database did not answer within {timeout_ms / 1000:g} s; try again"
                ) from exc

    def _seconds(self, start: Any, end: Any) -> Any:
        if self.dialect == "postgresql":
            return func.extract("epoch", end - start)
        return (func.julianday(end) - func.julianday(start)) * 86400.0

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def _summed_counters(last: tuple[str, str] | None) -> Select[Any]:
    """Counters summed by (metric, type, queue, le), pairs after ``last`` under OTHER_QUEUE."""
    c = counters.c
    queue: ColumnElement[Any] = c.queue
    if last is not None:
        queue = case((tuple_(c.job_type, c.queue) > tuple_(*last), OTHER_QUEUE), else_=c.queue)
    f = select(c.metric, c.job_type, queue.label("queue"), c.le, c.value).subquery().c
    summed = select(f.metric, f.job_type, f.queue, f.le, func.sum(f.value).label("value"))
    return summed.group_by(f.metric, f.job_type, f.queue, f.le)


def _busiest(seen: set[str], sampled: Counts, common: set[str], limit: int) -> list[str]:
    """The ``limit`` queues to report: the ``common`` ones first, then those with the most
    active jobs counted, then by name."""
    active = {q: sum(counts.get(q, 0) for counts in sampled.values()) for q in seen}
    return sorted(seen, key=lambda q: (q not in common, -active[q], q))[: max(limit, 0)]


def _figures(
    queue: str,
    sampled: Counts,
    estimates: Counts,
    recent: dict[str, Any] | None,
    oldest: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """One queue's entry of the overview."""
    counts = {
        s.value: max(sampled[s].get(queue, 0), estimates.get(s, {}).get(queue, 0))
        for s in sorted(ACTIVE)
    }
    done = recent or {"n": 0}
    n = done["n"]
    return {
        "counts": counts,
        "estimated": [s.value for s in sorted(estimates) if queue in estimates[s]],
        "completed_last_minute": done.get("completed_last_minute", 0),
        "failed_last_minute": done.get("failed_last_minute", 0),
        "mean_run_seconds": round(done["run"] / n, 6) if n else None,
        "mean_wait_seconds": round(done["wait"] / n, 6) if n else None,
        "oldest_queued_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
    }
