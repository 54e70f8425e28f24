"""PostgreSQL's hot-path statements, sent as raw SQL: the claim, the batched finish, the
batched insert, NOTIFY. Raw, because claimed rows come back as the text and numbers the
worker uses (no per-row type processing) and a batch travels as one JSON document.

Every table, column, state and outcome name in them comes from ``store.tables``, the core
enums and the rules in ``store.writes``: templates name them as ``{...}``, filled once at
import (a misspelt name fails there).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, TextClause, text

from conveyor.core.sizes import to_json
from conveyor.core.states import State
from conveyor.store.records import ClaimedJob, Finish, NewJob
from conveyor.store.tables import attempts, jobs
from conveyor.store.writes import (
    CLAIM,
    end_columns,
    recorded_by_job_row_sql,
    sql_literal,
    sql_sets,
)

_NAMES = {c.name: c.name for c in jobs.c} | {
    "jobs": jobs.name,
    "attempts": attempts.name,
    "queued": sql_literal(State.QUEUED.value),
    "running": sql_literal(State.RUNNING.value),
}


def _sql(template: str, **more: str) -> str:
    """``template`` with ``{name}`` filled: the jobs table's columns, ``jobs``, ``attempts``,
    the literals ``queued`` and ``running``, and ``more``."""
    return template.format_map(_NAMES | more)


# -- claim -------------------------------------------------------------------------------------

_CLAIM = """
    UPDATE {jobs}
       SET {sets}
     WHERE {which} AND {state} = {queued}
    RETURNING {id}::text, {type}, {queue}, {payload}, {attempt}, {attempt} - {uncharged},
              {max_attempts}, {timeout_s}, {progress}, {stage},
              extract(epoch FROM %(now)s - coalesce({scheduled_at}, {created_at}))::float8,
              {meta}
"""
_CLAIM_SETS = sql_sets(CLAIM, lambda field: f"%({field})s", row="")
# The locked pick is materialised first: as a plain ``IN (subquery)`` the planner may rescan
# it once per outer row and match far more than its LIMIT.
_PICK = """
    WITH picked AS MATERIALIZED (
        SELECT {id} FROM {jobs} WHERE {state} = {queued} AND {queue} = %(queue)s {after}
        ORDER BY {id} LIMIT %(count)s FOR UPDATE SKIP LOCKED
    )"""
_CLAIM_PICKED = _sql(_CLAIM, sets=_CLAIM_SETS, which=_sql("{id} IN (SELECT {id} FROM picked)"))

#: Claim the queued jobs among ``%(ids)s`` (``{id,...}``, one array parameter).
CLAIM_IDS = _sql(_CLAIM, sets=_CLAIM_SETS, which=_sql("{id} = ANY(CAST(%(ids)s AS uuid[]))"))
#: Claim the ``%(count)s`` oldest queued jobs of ``%(queue)s``.
CLAIM_NEXT = _sql(_PICK, after="") + _CLAIM_PICKED
#: The same, after the id ``%(after)s``.
CLAIM_NEXT_AFTER = _sql(_PICK, after=_sql("AND {id} > CAST(%(after)s AS uuid)")) + _CLAIM_PICKED


def claim(
    conn: Connection,
    sql: str,
    params: dict[str, Any],
    worker_id: str,
    now: datetime,
    lease_s: float,
) -> list[ClaimedJob]:
    """Run one of the claims above with its ``params``; the claimed jobs by id."""
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
            meta=r[11],
        )
        for r in rows
    ]


# -- finish ------------------------------------------------------------------------------------

# A batch of finishes as one statement whatever its size — the UPDATE joined to the finishes
# and the INSERT of their attempt rows — instead of two per job. The rows travel as one JSON
# document (encoding it is C code; adapting arrays of values is not); ``v`` names each
# finish's fields as ``Finish`` does, which ``end_columns`` reads.
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
        INSERT INTO {attempts} ({attempt_columns})
        SELECT id, attempt, worker_id, started_at, finished_at, outcome, error->>'type',
               error->>'message', error->>'traceback'
        FROM v WHERE NOT {recorded_by_job_row}
        ON CONFLICT DO NOTHING
    ),
    done AS (
        UPDATE {jobs} AS j SET {sets}
        FROM v WHERE j.{id} = v.id AND j.{attempt} = v.attempt AND j.{state} = {running}
        RETURNING 1
    )
    SELECT count(*) FROM done
"""
_ATTEMPT_COLUMNS = ", ".join(c.name for c in attempts.c if not c.primary_key)


@functools.cache
def finish_sql(state: State, charges_attempt: bool) -> TextClause:
    """The batched finish of attempts ending in ``state`` (``:state``, ``:rows``)."""
    return text(
        _sql(
            _FINISH,
            attempt_columns=_ATTEMPT_COLUMNS,
            recorded_by_job_row=recorded_by_job_row_sql("attempt", "outcome"),
            sets=sql_sets(end_columns(state, charges_attempt), lambda f: f"v.{f}", row="j."),
        )
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def finish_rows(conn: Connection, group: Sequence[Finish]) -> int:
    """Apply one group of finishes (same state and fence) in one statement; returns how many
    passed the fence. Attempt rows are written for all, fenced or not, once per (job,
    attempt), except where the job row records the attempt (``recorded_by_job_row``).

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
    sql = finish_sql(first.state, first.charges_attempt)
    params = {"rows": to_json(rows), "state": first.state.value}
    return int(conn.execute(sql, params).scalar_one())


# -- insert ------------------------------------------------------------------------------------

# One statement for any number of rows: the rows travel as one JSON document, so the server
# parses and plans once (an executemany runs one INSERT per row) and the client encodes once,
# in C (adapting arrays of values is Python).
_INSERT = _sql(
    """
    INSERT INTO {jobs} ({id}, {type}, {queue}, {state}, {payload}, {max_attempts}, {timeout_s},
                        {created_at}, {scheduled_at}, {updated_at}, {attempt}, {uncharged},
                        {cancel_requested}, {meta})
    SELECT {id}, {type}, {queue}, {state}, {payload}, {max_attempts}, {timeout_s},
           {created_at}, {scheduled_at}, {created_at}, 0, 0, false, {meta}
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS t({id} uuid, {type} text, {queue} text, {state} text, {payload} jsonb,
              {max_attempts} int, {timeout_s} float8, {created_at} timestamptz,
              {scheduled_at} timestamptz, {meta} jsonb)
"""
)
INSERT_ROWS = text(_INSERT)
#: The same, waking idle workers (``:channel``) in the same statement: no round trip, no
#: commit of its own.
INSERT_ROWS_WAKE = text(
    _sql(
        """
    WITH inserted AS ({insert} RETURNING {queue}, {state})
    SELECT pg_notify(:channel, {queue})
      FROM (SELECT DISTINCT {queue} FROM inserted WHERE {state} = {queued}) AS woken
    """,
        insert=_INSERT,
    )
)
#: One notice: ``:payload`` on ``:channel``.
NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def insert_rows(conn: Connection, new_jobs: Sequence[NewJob], wake: str | None = None) -> None:
    """Insert jobs without an idempotency key; with ``wake``, NOTIFY that channel with each
    queue that got queued jobs."""
    rows = [
        {
            "id": j.id,
            "type": j.type,
            "queue": j.queue,
            "state": j.state.value,
            "payload": j.payload,
            "max_attempts": j.max_attempts,
            "timeout_s": j.timeout_s,
            "created_at": j.created_at.isoformat(),
            "scheduled_at": j.scheduled_at.isoformat() if j.scheduled_at else None,
            "meta": j.meta,
        }
        for j in new_jobs
    ]
    if wake is None:
        conn.execute(INSERT_ROWS, {"rows": to_json(rows)})
    else:
        conn.execute(INSERT_ROWS_WAKE, {"rows": to_json(rows), "channel": wake}).all()
