"""What the hot path writes to a job row, column by column — a claim, and each end of an
attempt — and which ends also write an attempt row: stated once here, rendered twice, into
SQLAlchemy (``sa_values``: SQLite, recoveries) and into PostgreSQL's raw statements
(``sql_sets``, read by ``store.pg``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, func

from conveyor.core.outcome import AttemptOutcome
from conveyor.core.states import TERMINAL, State
from conveyor.store.tables import jobs


@dataclass(frozen=True, slots=True)
class Given:
    """The writer's value named ``field``: a ``Finish`` field, or a claim's parameter."""

    field: str


@dataclass(frozen=True, slots=True)
class GivenOrKept:
    """The writer's ``field`` when it has one (not None), else what the row holds."""

    field: str


@dataclass(frozen=True, slots=True)
class Fixed:
    value: str | float | bool | None


@dataclass(frozen=True, slots=True)
class Incremented:
    """What the row holds, plus one."""


Source = Given | GivenOrKept | Fixed | Incremented
#: (jobs column, where its new value comes from), in the order they are set.
Columns = tuple[tuple[Column[Any], Source], ...]

#: A claim takes a queued job: the parameters are ``worker_id``, ``lease_until`` and ``now``.
CLAIM: Columns = (
    (jobs.c.state, Fixed(State.RUNNING.value)),
    (jobs.c.attempt, Incremented()),
    (jobs.c.worker_id, Given("worker_id")),
    (jobs.c.lease_expires_at, Given("lease_until")),
    (jobs.c.started_at, Given("now")),
    (jobs.c.updated_at, Given("now")),
    (jobs.c.cancel_requested, Fixed(False)),
)

#: A job claimed ahead of a free slot and handed back before it started (``worker.ahead``):
#: queued again, the claim's attempt not charged; the parameter is ``now``.
RELEASE: Columns = (
    (jobs.c.state, Fixed(State.QUEUED.value)),
    (jobs.c.worker_id, Fixed(None)),
    (jobs.c.lease_expires_at, Fixed(None)),
    (jobs.c.uncharged, Incremented()),
    (jobs.c.updated_at, Given("now")),
)


@functools.cache
def end_columns(state: State, charges_attempt: bool) -> Columns:
    """What ending an attempt in ``state`` writes, from the ``Finish`` fields."""
    completed = state is State.COMPLETED
    columns: list[tuple[Column[Any], Source]] = [
        (jobs.c.state, Given("state")),
        (jobs.c.error, Given("error")),
        # A completed job keeps its worker: it ran the attempt the job row records.
        (jobs.c.worker_id, Given("worker_id") if completed else Fixed(None)),
        (jobs.c.lease_expires_at, Fixed(None)),
        (jobs.c.cancel_requested, Fixed(False)),
        (jobs.c.updated_at, Given("finished_at")),
        # When the handler was called: later than the claim for a job claimed ahead.
        (jobs.c.started_at, GivenOrKept("started_at")),
        (jobs.c.progress, Fixed(100.0) if completed else GivenOrKept("progress")),
        (jobs.c.stage, GivenOrKept("stage")),
        (jobs.c.message, GivenOrKept("message")),
    ]
    if completed:
        columns.append((jobs.c.result, Given("result")))
    if state in TERMINAL:
        columns.append((jobs.c.finished_at, Given("finished_at")))
    if state is State.RETRYING:
        columns.append((jobs.c.scheduled_at, Given("run_at")))
    if not charges_attempt:
        columns.append((jobs.c.uncharged, Incremented()))
    return tuple(columns)


# -- which ends write an attempt row ---------------------------------------------------------

#: The attempt the job row alone records, when it ended with ``ROW_RECORDED_OUTCOME``.
ROW_RECORDED_ATTEMPT = 1
ROW_RECORDED_OUTCOME = AttemptOutcome.COMPLETED


def recorded_by_job_row(attempt: int, outcome: AttemptOutcome) -> bool:
    """A job's first attempt, when it completed, is recorded by the job row alone (worker,
    start, end, outcome): the common case writes no attempt row. A completed job is never
    run again, so nothing overwrites it; ``JobStore.get`` shows it as attempt 1."""
    return attempt == ROW_RECORDED_ATTEMPT and outcome is ROW_RECORDED_OUTCOME


def recorded_by_job_row_sql(attempt: str, outcome: str) -> str:
    """``recorded_by_job_row`` as an SQL condition on the expressions given."""
    return (
        f"({outcome} = {sql_literal(ROW_RECORDED_OUTCOME.value)}"
        f" AND {attempt} = {sql_literal(ROW_RECORDED_ATTEMPT)})"
    )


# -- the two renderings ----------------------------------------------------------------------


def sa_values(columns: Columns, given: Callable[[Column[Any], str], Any]) -> dict[str, Any]:
    """``columns`` as ``update(jobs).values(...)``; ``given(column, field)`` is the value
    (or bind parameter) of a given field."""
    values: dict[str, Any] = {}
    for column, source in columns:
        if isinstance(source, Given):
            values[column.name] = given(column, source.field)
        elif isinstance(source, GivenOrKept):
            values[column.name] = func.coalesce(given(column, source.field), column)
        elif isinstance(source, Fixed):
            values[column.name] = source.value
        else:
            values[column.name] = column + 1
    return values


def sql_sets(columns: Columns, given: Callable[[str], str], row: str) -> str:
    """``columns`` as the SET list of a raw PostgreSQL UPDATE; ``given(field)`` spells a
    given field, ``row`` prefixes the updated row's columns (``"j."``, or ``""``).

    A given None stored in a JSON column is JSON null, not SQL NULL, as SQLAlchemy's JSON
    type stores it."""
    sets = []
    for column, source in columns:
        if isinstance(source, Given):
            value = given(source.field)
            if isinstance(column.type, JSON):
                value = f"coalesce({value}, 'null'::jsonb)"
        elif isinstance(source, GivenOrKept):
            value = f"coalesce({given(source.field)}, {row}{column.name})"
        elif isinstance(source, Fixed):
            value = sql_literal(source.value)
        else:
            value = f"{row}{column.name} + 1"
        sets.append(f"{column.name} = {value}")
    return ", ".join(sets)


def sql_literal(value: str | float | bool | None) -> str:
    """``value`` as an SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)
