"""The hot path's writes are described once (``store.writes``) and both of their forms are
generated from that description: the SQLAlchemy statements (SQLite, recoveries) and the raw
PostgreSQL ones (``store.pg``). Each test reads the statements as they are sent — compiled
SQLAlchemy, the raw SQL text — back into one shape and compares them with the description.

No server: SQL is compiled, not run (the one condition evaluated runs on an in-memory SQLite).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import JSON, Update, create_engine
from sqlalchemy.dialects import postgresql

from conveyor.core.outcome import AttemptOutcome
from conveyor.core.states import TRANSITIONS, State
from conveyor.store import pg
from conveyor.store.claims import claim_statement
from conveyor.store.records import Finish
from conveyor.store.runs import RunStore, finish_statement
from conveyor.store.tables import jobs
from conveyor.store.writes import (
    CLAIM,
    Columns,
    Fixed,
    Given,
    GivenOrKept,
    end_columns,
    recorded_by_job_row,
    recorded_by_job_row_sql,
)

END_STATES = sorted(TRANSITIONS[State.RUNNING])  # every state an attempt can end in
Token = tuple[Any, ...]  # ("given", field) | ("kept", field) | ("fixed", value) | ("plus1",)


def _described(columns: Columns) -> dict[str, Token]:
    out: dict[str, Token] = {}
    for column, source in columns:
        if isinstance(source, Given):
            out[column.name] = ("given", source.field)
        elif isinstance(source, GivenOrKept):
            out[column.name] = ("kept", source.field)
        elif isinstance(source, Fixed):
            out[column.name] = ("fixed", source.value)
        else:
            out[column.name] = ("plus1",)
    return out


def _literal(text: str) -> Any:
    if text == "NULL":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return float(text) if "." in text else int(text)


def _token(column: str, expr: str, placeholder: Callable[[str], Token]) -> Token:
    """One SET value, as either form spells it, read back into a token."""
    expr = expr.strip()
    if m := re.fullmatch(r"\(?(?:\w+\.)?(\w+) \+ (.+?)\)?", expr):
        assert m[1] == column and _token(column, m[2], placeholder) == ("fixed", 1), expr
        return ("plus1",)
    if m := re.fullmatch(r"coalesce\((.+), (.+)\)", expr):
        given = _token(column, m[1], placeholder)
        if m[2] == "'null'::jsonb":  # a given None stored as JSON null (JSON columns only)
            assert isinstance(jobs.c[column].type, JSON), expr
            return given
        assert re.fullmatch(rf"(?:\w+\.)?{column}", m[2]), expr
        return ("kept", given[1])
    if m := re.fullmatch(r"%\((\w+)\)s", expr):
        return placeholder(m[1])
    if m := re.fullmatch(r"v\.(\w+)", expr):
        return ("given", m[1])
    return ("fixed", _literal(expr))


def _sets(sql: str, placeholder: Callable[[str], Token]) -> dict[str, Token]:
    sql = re.sub(r"::(?:TIMESTAMP WITH TIME ZONE|[A-Z]+)", "", " ".join(sql.split()))  # casts
    listed = re.search(r" SET (.+?) (?:FROM v )?WHERE ", sql)
    assert listed is not None, sql
    out = {}
    for item in re.split(r", (?=\w+ ?= ?)", listed[1]):
        column, expr = re.split(r" ?= ?", item, maxsplit=1)
        out[column] = _token(column, expr, placeholder)
    return out


def _sa_sets(stmt: Update, given: Callable[[str, Any], Token | None]) -> dict[str, Token]:
    """The SET list of a compiled SQLAlchemy UPDATE; ``given(name, value)`` recognises a
    bound parameter as a given value, else it is a fixed one."""
    compiled = stmt.compile(dialect=postgresql.dialect())

    def placeholder(name: str) -> Token:
        return given(name, compiled.params[name]) or ("fixed", compiled.params[name])

    return _sets(str(compiled), placeholder)


def _finish_given(name: str, value: Any) -> Token | None:
    return ("given", name.removeprefix("b_")) if name.startswith("b_") else None


@pytest.mark.parametrize("charged", [True, False], ids=["charged", "uncharged"])
@pytest.mark.parametrize("state", END_STATES, ids=str)
def test_both_finishes_set_what_end_columns_says(state: State, charged: bool) -> None:
    described = _described(end_columns(state, charged))
    pg_sets = _sets(str(pg.finish_sql(state, charged)), lambda name: ("given", name))
    assert pg_sets == described
    for recovery in (False, True):
        assert _sa_sets(finish_statement(state, charged, recovery), _finish_given) == described


def test_end_columns_state_the_rules() -> None:
    for state in END_STATES:
        for charged in (True, False):
            cols = _described(end_columns(state, charged))
            assert cols["state"] == ("given", "state") and cols["error"] == ("given", "error")
            assert cols["lease_expires_at"] == ("fixed", None)
            assert cols["cancel_requested"] == ("fixed", False)
            assert cols["updated_at"] == ("given", "finished_at")
            assert cols["stage"] == ("kept", "stage") and cols["message"] == ("kept", "message")
            completed = state is State.COMPLETED
            assert cols["worker_id"] == (("given", "worker_id") if completed else ("fixed", None))
            assert cols["progress"] == (("fixed", 100.0) if completed else ("kept", "progress"))
            assert ("result" in cols) is completed
            ended = state in (State.COMPLETED, State.FAILED, State.CANCELED)
            assert cols.get("finished_at") == (("given", "finished_at") if ended else None)
            retrying = state is State.RETRYING
            assert cols.get("scheduled_at") == (("given", "run_at") if retrying else None)
            assert cols.get("uncharged") == (None if charged else ("plus1",))


def test_both_claims_set_what_claim_says() -> None:
    now, lease_s = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 30.0
    lease_until = now + timedelta(seconds=lease_s)
    givens = {"worker-sentinel": "worker_id", now: "now", lease_until: "lease_until"}

    def claim_given(name: str, value: Any) -> Token | None:
        field = givens.get(value) if isinstance(value, str | datetime) else None
        return None if field is None else ("given", field)

    described = _described(CLAIM)
    stmt = claim_statement(jobs.c.id.in_(["x"]), "worker-sentinel", now, lease_s)
    assert _sa_sets(stmt, claim_given) == described
    for sql in (pg.CLAIM_IDS, pg.CLAIM_NEXT, pg.CLAIM_NEXT_AFTER):
        assert _sets(sql, lambda name: ("given", name)) == described


@pytest.mark.parametrize("outcome", list(AttemptOutcome), ids=str)
def test_the_first_completed_attempt_rule_is_one_rule(outcome: AttemptOutcome) -> None:
    condition = recorded_by_job_row_sql("attempt", "outcome")
    for state in END_STATES:  # the PostgreSQL finish skips exactly those attempt rows
        assert f"WHERE NOT {condition}" in str(pg.finish_sql(state, True))
    store = RunStore(create_engine("sqlite://"))  # the SQLAlchemy finish asks the predicate
    inserted: list[Any] = []
    conn: Any = type("Conn", (), {"execute": lambda self, stmt, rows: inserted.extend(rows)})()
    with sqlite3.connect(":memory:") as db:
        for attempt in (1, 2, 3):
            in_sql = db.execute(
                f"SELECT {condition} FROM (SELECT ? AS attempt, ? AS outcome)",
                (attempt, outcome.value),
            ).fetchone()[0]
            in_python = recorded_by_job_row(attempt, outcome)
            assert bool(in_sql) is in_python
            assert in_python is (attempt == 1 and outcome is AttemptOutcome.COMPLETED)
            inserted.clear()
            store._record_attempts(conn, [_finish(attempt, outcome)])
            assert len(inserted) == (0 if in_python else 1)


def _finish(attempt: int, outcome: AttemptOutcome) -> Finish:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    return Finish("0190b1c2-0000-7000-8000-000000000000", attempt, State.FAILED, outcome, "w",
                  at, at)  # fmt: skip
