"""Jobs chosen by a filter (the one filter ``JobStore.list`` uses too), and a retry, cancel
or delete of every job it matches, in batches of one short transaction each.

The walk goes newest first, by keyset on the time-ordered id (``id < cursor``), so jobs
created after its first batch are never reached, and a retried job that fails again is not met
twice. Each batch selects the next ``batch_size`` ids that match the filter and whose state
allows the action — on PostgreSQL ``FOR UPDATE SKIP LOCKED``, so a row a worker is claiming
or finishing at that instant is passed over, never waited on — and changes them with a
statement guarded by the same states: a job that changed state in between is skipped, not
corrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Engine,
    and_,
    delete,
    or_,
    select,
    text,
    update,
)

from conveyor.core.ids import id_floor
from conveyor.core.states import State
from conveyor.core.storable import text_problem
from conveyor.core.views import BulkAction, JobFilter
from conveyor.store.errors import translate_errors
from conveyor.store.tables import attempts, jobs

#: Slack around an id range derived from a time range, for clock steps between hosts.
ID_SLACK_MS = 1000
DEFAULT_BATCH = 1000
MAX_BATCH = 10_000
CANCELED_BEFORE_RUN = {"type": "Canceled", "message": "canceled before it ran"}

#: A batch's walk must read an index in id order: each batch then goes on where the last
#: stopped, and the whole walk reads each row once. Sorting is what PostgreSQL picks when
#: statistics lag a mass change (told a state is rare, it gathers every matching row through
#: the state index and sorts them, for every batch: a million-row cancel took 5 minutes).
ORDERED_PLANS_ONLY = text("SET LOCAL enable_sort = off")

#: (queue, id) of each changed job: what ``Client.dispatch`` takes.
Changed = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class BulkBatch:
    """One committed batch: the jobs it changed, and the lowest id it looked at (None when
    no matching job is left below it: the walk is over)."""

    changed: Changed
    cursor: str | None


def filter_conditions(job_filter: JobFilter) -> list[ColumnElement[bool]] | None:
    """The filter as SQL conditions; None when no job can match (a type or queue name that
    cannot be stored, which PostgreSQL cannot even compare)."""
    f = job_filter
    if any(isinstance(t, str) and text_problem(t) for t in (f.type, f.queue)):
        return None
    conditions: list[ColumnElement[bool]] = []
    if f.state is not None:
        conditions.append(jobs.c.state == State(f.state).value)
    if f.type is not None:
        conditions.append(jobs.c.type == f.type)
    if f.queue is not None:
        conditions.append(jobs.c.queue == f.queue)
    # Ids embed their creation time, so a time range is also an id range: the scan stays
    # inside it (with a second of slack for clock steps) instead of walking the index.
    if f.created_after is not None:
        floor = id_floor(int(f.created_after.timestamp() * 1000) - ID_SLACK_MS)
        conditions += [jobs.c.created_at >= f.created_after, jobs.c.id >= floor]
    if f.created_before is not None:
        ceiling = id_floor(int(f.created_before.timestamp() * 1000) + ID_SLACK_MS)
        conditions += [jobs.c.created_at < f.created_before, jobs.c.id < ceiling]
    return conditions


def retry_values(now: datetime) -> dict[str, Any]:
    """What a manual retry writes, to one job or many: queued, a fresh attempt budget (the
    attempts so far become uncharged), the last run's traces cleared."""
    return {
        "state": State.QUEUED.value,
        "uncharged": jobs.c.attempt,
        "result": None,
        "error": None,
        "stage": None,
        "progress": None,
        "message": None,
        "cancel_requested": False,
        "finished_at": None,
        "scheduled_at": None,
        "updated_at": now,
    }


def cancel_values(running: bool, now: datetime) -> dict[str, Any]:
    """What a cancel writes: a running job is only asked to stop (its worker ends the run),
    a waiting one is canceled at once."""
    if running:
        return {"cancel_requested": True, "updated_at": now}
    return {
        "state": State.CANCELED.value,
        "finished_at": now,
        "updated_at": now,
        "error": dict(CANCELED_BEFORE_RUN),
    }


class BulkStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def batches(
        self,
        action: BulkAction,
        job_filter: JobFilter,
        now: Callable[[], datetime],
        *,
        batch_size: int = DEFAULT_BATCH,
        cursor: str | None = None,
    ) -> Iterator[BulkBatch]:
        """Each batch in turn, down to the oldest matching job (below ``cursor`` when given).

        Every batch is committed before it is yielded: stop iterating to stop the walk.
        ``now`` is read once per batch.
        """
        conditions = filter_conditions(job_filter)
        if conditions is None or job_filter.state not in (None, *action.sources):
            return  # no job can match: do not walk the index to find that out
        conditions.append(_allows(action))
        limit = max(1, min(batch_size, MAX_BATCH))
        while True:
            batch = self._batch(action, conditions, now(), limit, cursor)
            yield batch
            if batch.cursor is None:
                return
            cursor = batch.cursor

    @translate_errors
    def _batch(
        self,
        action: BulkAction,
        conditions: Sequence[ColumnElement[bool]],
        now: datetime,
        limit: int,
        cursor: str | None,
    ) -> BulkBatch:
        """One transaction: up to ``limit`` matching ids below ``cursor``, newest first,
        picked (and on PostgreSQL locked, passing over rows others hold), then changed."""
        query = select(jobs.c.id).where(*conditions).order_by(jobs.c.id.desc()).limit(limit)
        if cursor is not None:
            query = query.where(jobs.c.id < cursor)
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(ORDERED_PLANS_ONLY)
                query = query.with_for_update(skip_locked=True)  # never wait on a worker
            ids = [str(i) for i in conn.execute(query).scalars()]
            changed = _APPLY[action](conn, ids, now) if ids else []
        return BulkBatch(changed, ids[-1] if len(ids) == limit else None)


def _allows(action: BulkAction) -> ColumnElement[bool]:
    """The job's state allows the action (and a running job is not already asked to stop)."""
    allowed = _in_states(action.sources)
    if action is BulkAction.CANCEL:
        return and_(allowed, _not_asked_to_stop())
    return allowed


def _retry(conn: Connection, ids: Sequence[str], now: datetime) -> Changed:
    stmt = update(jobs).where(_guard(ids, BulkAction.RETRY.sources))
    return _pairs(conn.execute(stmt.values(**retry_values(now)).returning(*_RETURNED)))


def _cancel(conn: Connection, ids: Sequence[str], now: datetime) -> Changed:
    waiting = BulkAction.CANCEL.sources - {State.RUNNING}
    stop = update(jobs).where(_guard(ids, waiting))
    stopped = _pairs(conn.execute(stop.values(**cancel_values(False, now)).returning(*_RETURNED)))
    ask = update(jobs).where(_guard(ids, {State.RUNNING}), jobs.c.cancel_requested.is_(False))
    asked = _pairs(conn.execute(ask.values(**cancel_values(True, now)).returning(*_RETURNED)))
    return stopped + asked


def _delete(conn: Connection, ids: Sequence[str], now: datetime) -> Changed:
    """Terminal jobs and their attempt rows (as ``UpkeepStore.purge`` deletes them)."""
    stmt = delete(jobs).where(_guard(ids, BulkAction.DELETE.sources))
    gone = _pairs(conn.execute(stmt.returning(*_RETURNED)))
    if gone:
        conn.execute(delete(attempts).where(attempts.c.job_id.in_([i for _, i in gone])))
    return gone


_RETURNED = (jobs.c.queue, jobs.c.id)
_APPLY: dict[BulkAction, Callable[[Connection, Sequence[str], datetime], Changed]] = {
    BulkAction.RETRY: _retry,
    BulkAction.CANCEL: _cancel,
    BulkAction.DELETE: _delete,
}


def _in_states(states: Iterable[State]) -> ColumnElement[bool]:
    return jobs.c.state.in_(sorted(s.value for s in states))


def _not_asked_to_stop() -> ColumnElement[bool]:
    return or_(jobs.c.state != State.RUNNING.value, jobs.c.cancel_requested.is_(False))


def _guard(ids: Sequence[str], states: Iterable[State]) -> ColumnElement[bool]:
    """``id IN ids AND state IN states``, the state compared as an expression no index
    holds: statistics lag a mass change (a million jobs just retried still count as failed),
    and PostgreSQL, told that few jobs are queued, read the 1,000 ids through the state
    index (every queued row, 0.3 s a batch) rather than by primary key (2 ms)."""
    return and_(jobs.c.id.in_(ids), jobs.c.state.concat("").in_(sorted(s.value for s in states)))


def _pairs(result: CursorResult[Any]) -> Changed:
    return [(row.queue, str(row.id)) for row in result]
