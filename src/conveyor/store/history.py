"""The last day per minute and per queue (``conveyor_minutes``): written beside the counters
and by the reconciler's depth samples, read for the dashboard's charts.

Rows are keyed (minute, metric, queue, le) with job types folded, so a minute holds a few
dozen rows per queue whatever the job rate; reading an hour never touches ``conveyor_jobs``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Float,
    String,
    and_,
    bindparam,
    case,
    column,
    delete,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core import metrics
from conveyor.core.metrics import MinuteKey
from conveyor.store.tables import UTCDateTime, minutes
from conveyor.store.writes import sql_literal

#: Most queues a history reports one by one (the busiest of the window, then by name); the
#: total covers every queue.
HISTORY_QUEUE_LIMIT = 50
#: The span of a history's ``recent`` figures (the current minute counts for what elapsed).
RECENT_MINUTES = 5

_OUTCOMES = {state.value: name for state, name in metrics.OUTCOME_METRICS.items()}
_GAUGES = (metrics.QUEUED_GAUGE, metrics.RUNNING_GAUGE)
_TOTAL = ""  # the queue label of a history's total (no queue is named "")


@dataclass(frozen=True, slots=True)
class Minute:
    """One minute of one queue (or of all): counts of attempts that ended then, means and
    wait percentiles (None without observations), depths (None: no sample that minute)."""

    at: datetime
    completed: int
    failed: int
    retried: int
    canceled: int
    mean_wait_seconds: float | None
    mean_run_seconds: float | None
    wait_p50_seconds: float | None
    wait_p95_seconds: float | None
    wait_p99_seconds: float | None
    queued: int | None
    running: int | None


@dataclass(frozen=True, slots=True)
class Recent:
    """The last RECENT_MINUTES minutes' rates and means (for an overview table)."""

    completed_per_minute: float
    failed_per_minute: float
    mean_wait_seconds: float | None
    mean_run_seconds: float | None


@dataclass(frozen=True, slots=True)
class Series:
    minutes: list[Minute]  # oldest first, one per minute, zero-filled
    recent: Recent


@dataclass(frozen=True, slots=True)
class History:
    """Per minute from ``since`` to the current minute: in ``total`` and per queue (at most
    HISTORY_QUEUE_LIMIT, ``truncated`` when more had rows in the window)."""

    since: datetime
    minutes: int
    total: Series
    queues: dict[str, Series]
    truncated: bool


# -- writing ---------------------------------------------------------------------------------


def upsert(
    conn: Connection, minute: datetime, values: Mapping[MinuteKey, float], *, add: bool
) -> None:
    """Write ``values`` into ``minute``'s rows in one statement: added to what is there
    (counts, sums) or, ``add=False``, in its place (gauges)."""
    if not values:
        return
    rows = [
        {"metric": m, "queue": q, "le": le, "value": v} for (m, q, le), v in sorted(values.items())
    ]
    if conn.dialect.name == "postgresql":
        conn.execute(_pg_upsert(add), {"minute": minute, "rows": rows})
    else:
        conn.execute(_sqlite_upsert(add), [{"minute": minute, **row} for row in rows])


@functools.cache
def _pg_upsert(add: bool) -> Any:
    """One INSERT … SELECT from a JSON document of rows: one statement whatever their number."""
    given = (
        func.json_to_recordset(bindparam("rows", type_=JSON))
        .table_valued(
            column("metric", String),
            column("queue", String),
            column("le", String),
            column("value", Float),
        )
        .render_derived(name="given", with_types=True)
    )
    minute = bindparam("minute", type_=UTCDateTime)
    picked = select(minute, given.c.metric, given.c.queue, given.c.le, given.c.value)
    stmt = postgresql.insert(minutes).from_select(
        ["minute", "metric", "queue", "le", "value"], picked
    )
    new = stmt.excluded.value
    return stmt.on_conflict_do_update(
        index_elements=["minute", "metric", "queue", "le"],
        set_={"value": minutes.c.value + new if add else new},
    )


@functools.cache
def _sqlite_upsert(add: bool) -> Any:
    """Executed once per row: SQLite is in process, a row costs no round trip."""
    stmt = sqlite.insert(minutes)
    new = stmt.excluded.value
    return stmt.on_conflict_do_update(
        index_elements=["minute", "metric", "queue", "le"],
        set_={"value": minutes.c.value + new if add else new},
    )


def purge(conn: Connection, before: datetime, max_minutes: int) -> int:
    """Delete rows of minutes before ``before``, at most ``max_minutes`` minutes of them
    from the oldest (a probe of the key, then a range of it); returns how many rows."""
    oldest = conn.execute(select(func.min(minutes.c.minute))).scalar()
    if oldest is None or oldest >= before:
        return 0
    cut = min(before, oldest + timedelta(minutes=max_minutes))
    return conn.execute(delete(minutes).where(minutes.c.minute < cut)).rowcount


# -- reading ---------------------------------------------------------------------------------


def read(conn: Connection, now: datetime, span: int, queue: str | None, limit: int) -> History:
    """The history of the ``span`` minutes up to ``now``'s, in two statements: the queues
    to report, then their rows and the total's, summed per minute."""
    until = metrics.minute_of(now)
    since = until - timedelta(minutes=span - 1)
    first = min(since, until - timedelta(minutes=RECENT_MINUTES - 1))
    window = and_(minutes.c.minute >= first, minutes.c.minute <= until)
    if queue is None:
        kept, truncated = _busiest(conn, window, limit)
    else:
        kept, truncated = [queue], False
    cells = _cells(conn, _rows(window, kept, queue))
    elapsed_min = (now - until).total_seconds() / 60
    series = {
        q: _series(cells.get(q, {}), cells.get(_TOTAL, {}), since, span, elapsed_min)
        for q in (_TOTAL, *kept)
    }
    total = series.pop(_TOTAL)
    return History(since, span, total, series, truncated)


def _busiest(conn: Connection, window: Any, limit: int) -> tuple[list[str], bool]:
    """The ``limit`` queues with the most counted in the window (outcomes and depths), then
    by name; and whether there were more."""
    activity = func.sum(minutes.c.value)
    query = (
        select(minutes.c.queue)
        .where(
            window,
            minutes.c.queue != _TOTAL,
            minutes.c.metric.in_([*_OUTCOMES.values(), *_GAUGES]),
        )
        .group_by(minutes.c.queue)
        .order_by(activity.desc(), minutes.c.queue)
        .limit(limit + 1)
    )
    found = list(conn.execute(query).scalars())
    return found[:limit], len(found) > limit


def _rows(window: Any, kept: Sequence[str], queue: str | None) -> Any:
    """Rows summed per (minute, queue, metric, bound): per kept queue, and over every queue
    (or ``queue``) as the total. Only the wait histogram keeps its bounds (percentiles); the
    run histogram is summed to its count."""
    c = minutes.c
    # Literals, not parameters: PostgreSQL matches a grouped expression to the selected one
    # only when they are spelled the same.
    wait = c.metric == literal_column(sql_literal(metrics.WAIT_BUCKET))
    le = case((wait, c.le), else_=literal_column("''"))
    per_queue = (
        select(c.minute, c.queue, c.metric, le.label("le"), func.sum(c.value))
        .where(window, c.queue.in_(list(kept)))
        .group_by(c.minute, c.queue, c.metric, le)
    )
    total = select(
        c.minute, literal_column("''").label("queue"), c.metric, le.label("le"), func.sum(c.value)
    ).where(window)
    if queue is not None:
        total = total.where(c.queue.in_([queue, _TOTAL]))
    return union_all(per_queue, total.group_by(c.minute, c.metric, le))


_Cell = dict[str, Any]  # metric -> summed value; "wait" -> {bound: count}


def _cells(conn: Connection, query: Any) -> dict[str, dict[datetime, _Cell]]:
    """queue -> minute -> its figures as read."""
    cells: dict[str, dict[datetime, _Cell]] = defaultdict(lambda: defaultdict(_new_cell))
    for minute, queue, metric, le, value in conn.execute(query):
        cell = cells[queue][minute]
        if metric == metrics.WAIT_BUCKET:
            cell["wait"][le] = float(value)
        else:
            cell[metric] = float(value)
    return cells


def _new_cell() -> _Cell:
    return {"wait": {}}


def _series(
    cells: Mapping[datetime, _Cell],
    total: Mapping[datetime, _Cell],
    since: datetime,
    span: int,
    elapsed_min: float,
) -> Series:
    """One queue's (or the total's) minutes from ``since``, zero-filled, and its recent
    figures; ``total`` tells which minutes had a depth sample."""
    empty = _new_cell()
    at = [since + timedelta(minutes=i) for i in range(span)]
    points = [
        _minute(t, cells.get(t, empty), metrics.SAMPLED_GAUGE in total.get(t, empty)) for t in at
    ]
    until = since + timedelta(minutes=span - 1)
    last = [cells.get(until - timedelta(minutes=i), empty) for i in range(RECENT_MINUTES)]
    return Series(points, _recent(last, RECENT_MINUTES - 1 + max(elapsed_min, 1 / 60)))


def _minute(at: datetime, cell: _Cell, sampled: bool) -> Minute:
    wait: dict[str, float] = cell["wait"]
    return Minute(
        at=at,
        completed=_count(cell, _OUTCOMES["completed"]),
        failed=_count(cell, _OUTCOMES["failed"]),
        retried=_count(cell, _OUTCOMES["retrying"]),
        canceled=_count(cell, _OUTCOMES["canceled"]),
        mean_wait_seconds=_mean(cell.get(metrics.WAIT_SUM, 0.0), sum(wait.values())),
        mean_run_seconds=_mean(cell.get(metrics.RUN_SUM, 0.0), cell.get(metrics.RUN_BUCKET, 0.0)),
        wait_p50_seconds=_round(metrics.quantile(wait, 0.50)),
        wait_p95_seconds=_round(metrics.quantile(wait, 0.95)),
        wait_p99_seconds=_round(metrics.quantile(wait, 0.99)),
        queued=_count(cell, metrics.QUEUED_GAUGE) if sampled else None,
        running=_count(cell, metrics.RUNNING_GAUGE) if sampled else None,
    )


def _recent(cells: Sequence[_Cell], span_min: float) -> Recent:
    """Rates over ``span_min`` minutes and means of ``cells`` (the last minutes)."""

    def total(metric: str) -> float:
        return float(sum(cell.get(metric, 0.0) for cell in cells))

    waits = sum(sum(cell["wait"].values()) for cell in cells)
    return Recent(
        completed_per_minute=round(total(_OUTCOMES["completed"]) / span_min, 3),
        failed_per_minute=round(total(_OUTCOMES["failed"]) / span_min, 3),
        mean_wait_seconds=_mean(total(metrics.WAIT_SUM), waits),
        mean_run_seconds=_mean(total(metrics.RUN_SUM), total(metrics.RUN_BUCKET)),
    )


def _count(cell: _Cell, metric: str) -> int:
    return round(float(cell.get(metric, 0.0)))


def _mean(total_s: float, n: float) -> float | None:
    return round(total_s / n, 6) if n > 0 else None


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)
