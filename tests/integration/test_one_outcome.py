"""One outcome: every change of a job's state, read from the database, is one the transition
table in core/states.py allows, and each run of a job ends exactly once.

A trigger the test puts on conveyor_jobs logs every change of state (and of attempt) into a
table of the test's own, inside the transaction that makes the change: what committed, in the
order it committed, whichever statement made it (claims and finishes are raw SQL the table
never sees). Workers are real processes; cancels and retries go through the client.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from conveyor import Conveyor, IllegalTransition, State
from conveyor.client import EnqueueRequest
from conveyor.core.outcome import AttemptOutcome
from conveyor.core.states import TERMINAL, can_transition
from conveyor.store import make_engine
from conveyor.store.tables import attempts, jobs
from tests.conftest import Backend, wait_for

LOG = "test_state_changes"

_PG_INSTALL = [
    f"""CREATE TABLE {LOG} (seq bigserial PRIMARY KEY, job_id text NOT NULL,
                           attempt int NOT NULL, src text, dst text NOT NULL)""",
    f"""CREATE FUNCTION {LOG}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'INSERT' THEN
            INSERT INTO {LOG} (job_id, attempt, src, dst)
            VALUES (NEW.id::text, NEW.attempt, NULL, NEW.state);
          ELSIF OLD.state IS DISTINCT FROM NEW.state
                OR OLD.attempt IS DISTINCT FROM NEW.attempt THEN
            INSERT INTO {LOG} (job_id, attempt, src, dst)
            VALUES (NEW.id::text, NEW.attempt, OLD.state, NEW.state);
          END IF;
          RETURN NULL;
        END $$""",
    f"""CREATE TRIGGER {LOG} AFTER INSERT OR UPDATE ON conveyor_jobs
        FOR EACH ROW EXECUTE FUNCTION {LOG}()""",
]
_PG_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS {LOG} ON conveyor_jobs",
    f"DROP FUNCTION IF EXISTS {LOG}()",
    f"DROP TABLE IF EXISTS {LOG}",
]
_SQLITE_INSTALL = [
    f"""CREATE TABLE {LOG} (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,
                           attempt INTEGER NOT NULL, src TEXT, dst TEXT NOT NULL)""",
    f"""CREATE TRIGGER {LOG}_insert AFTER INSERT ON conveyor_jobs BEGIN
          INSERT INTO {LOG} (job_id, attempt, src, dst)
          VALUES (NEW.id, NEW.attempt, NULL, NEW.state);
        END""",
    f"""CREATE TRIGGER {LOG}_update AFTER UPDATE ON conveyor_jobs
        WHEN OLD.state IS NOT NEW.state OR OLD.attempt IS NOT NEW.attempt BEGIN
          INSERT INTO {LOG} (job_id, attempt, src, dst)
          VALUES (NEW.id, NEW.attempt, OLD.state, NEW.state);
        END""",
]

#: The states an enqueue creates a job in.
ENTRY = frozenset({State.SCHEDULED, State.QUEUED})
#: Where a job may go when an attempt ends with each outcome.
LEADS_TO: dict[AttemptOutcome, frozenset[State]] = {
    AttemptOutcome.COMPLETED: frozenset({State.COMPLETED}),
    AttemptOutcome.ERROR: frozenset({State.RETRYING, State.FAILED}),
    AttemptOutcome.TIMEOUT: frozenset({State.RETRYING, State.FAILED}),
    AttemptOutcome.CRASHED: frozenset({State.RETRYING, State.FAILED}),
    AttemptOutcome.CANCELED: frozenset({State.CANCELED}),
    # a lost run that was being canceled ends canceled
    AttemptOutcome.WORKER_LOST: frozenset({State.RETRYING, State.FAILED, State.CANCELED}),
    AttemptOutcome.SHUTDOWN: frozenset({State.QUEUED}),
}


def _id(value: object) -> str:
    """A job id as the client spells it (SQLite stores the hex digits alone)."""
    return str(uuid.UUID(str(value)))


@dataclass(frozen=True)
class Change:
    attempt: int  # the job's attempt number after the change
    src: State | None  # None: the row was inserted
    dst: State


Row = tuple[State, int]  # a job row's (state, attempt)
Recorded = dict[int, AttemptOutcome]  # a job's recorded attempts: attempt -> outcome


class History:
    """The changes the trigger logged, and the rows they should have led to."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def install(cls, database_url: str) -> History:
        engine = make_engine(database_url)
        statements = _PG_INSTALL if engine.dialect.name == "postgresql" else _SQLITE_INSTALL
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        return cls(engine)

    def uninstall(self) -> None:
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as conn:
                for statement in _PG_UNINSTALL:
                    conn.exec_driver_sql(statement)
        self.engine.dispose()  # a SQLite file goes with its test

    def check(self, retried: Counter[str]) -> dict[str, list[Change]]:
        """Assert one outcome for every job; ``retried`` counts the explicit retries the test
        made of each. Returns every job's changes."""
        changes, rows, recorded = self._read()
        assert set(changes) == set(rows)
        assert set(recorded) <= set(rows)
        for job_id, path in changes.items():
            _check_job(job_id, path, rows[job_id], recorded.get(job_id, {}), retried[job_id])
        return changes

    def _read(self) -> tuple[dict[str, list[Change]], dict[str, Row], dict[str, Recorded]]:
        """In one snapshot: every job's changes in the order they committed, its row's
        (state, attempt), and its recorded attempts — attempt rows, and the job row for a
        first attempt that completed (which has no attempt row of its own)."""
        # PostgreSQL: one snapshot for the three reads; SQLite: BEGIN IMMEDIATE holds writers off
        pg = self.engine.dialect.name == "postgresql"
        options: dict[str, Any] = {"isolation_level": "REPEATABLE READ"} if pg else {}
        changes: dict[str, list[Change]] = {}
        recorded: dict[str, Recorded] = {}
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            logged = conn.execute(text(f"SELECT job_id, attempt, src, dst FROM {LOG} ORDER BY seq"))
            for job_id, attempt, src, dst in logged:
                change = Change(attempt, State(src) if src else None, State(dst))
                changes.setdefault(_id(job_id), []).append(change)
            found = conn.execute(select(jobs.c.id, jobs.c.state, jobs.c.attempt)).all()
            rows = {_id(i): (State(s), n) for i, s, n in found}
            history = select(attempts.c.job_id, attempts.c.attempt, attempts.c.outcome)
            for job_id, attempt, outcome in conn.execute(history):
                recorded.setdefault(_id(job_id), {})[attempt] = AttemptOutcome(outcome)
        for job_id, (state, attempt) in rows.items():
            if state is State.COMPLETED and attempt == 1 and 1 not in recorded.get(job_id, {}):
                recorded.setdefault(job_id, {})[1] = AttemptOutcome.COMPLETED
        return changes, rows, recorded


def _check_job(job_id: str, path: list[Change], row: Row, recorded: Recorded, retried: int) -> None:
    first, *rest = path
    assert first.src is None and first.dst in ENTRY and first.attempt == 0, (job_id, first)
    state, attempt = first.dst, 0
    for change in rest:
        where = f"job {job_id}: {change}, after {state} at attempt {attempt}"
        assert change.src is state, f"{where}: a change was lost or made from a stale state"
        assert change.src is not None and can_transition(change.src, change.dst), (
            f"{where}: not in the transition table"
        )
        claimed = change.dst is State.RUNNING
        assert change.attempt == attempt + claimed, f"{where}: the attempt number is off"
        state, attempt = change.dst, change.attempt
    assert row == (state, attempt), f"job {job_id}: the row is {row}, its changes end {state}"

    # Each attempt leaves running exactly once, and its record says how.
    ended = Counter(c.attempt for c in rest if c.src is State.RUNNING)
    assert all(n == 1 for n in ended.values()), f"job {job_id}: an attempt ended twice: {ended}"
    still_running = {attempt} if state is State.RUNNING else set()
    assert set(ended) == set(range(1, attempt + 1)) - still_running, (job_id, ended)
    assert set(recorded) == set(ended), f"job {job_id}: recorded {recorded}, ended {ended}"
    for c in rest:
        if c.src is State.RUNNING:
            outcome = recorded[c.attempt]
            assert c.dst in LEADS_TO[outcome], f"job {job_id}: {outcome} led to {c.dst}"

    # One terminal transition per run; a terminal state is left only by an explicit retry.
    left = sum(c.src in TERMINAL for c in rest)
    entered = sum(c.dst in TERMINAL for c in rest)
    assert left == retried, f"job {job_id} left a terminal state {left} times, retried {retried}"
    assert entered == left + (state in TERMINAL), f"job {job_id}: {entered} terminal changes"


@pytest.fixture
def record() -> Iterator[Callable[[Backend], History]]:
    """Start logging a backend's state changes; the trigger is dropped after the test."""
    installed: list[History] = []

    def start(backend: Backend) -> History:
        installed.append(History.install(backend.database_url))
        return installed[-1]

    yield start
    for history in installed:
        history.uninstall()


def _path(changes: list[Change]) -> list[str]:
    return [c.dst.value for c in changes]


def _state(app: Conveyor, job_id: str) -> State:
    return app.get(job_id).state


# -- every path, on every backend ------------------------------------------------------------


def test_every_path_makes_one_outcome_per_run(
    backend: Backend, record: Callable[[Backend], History]
) -> None:
    history = record(backend)
    app = backend.app()
    retried: Counter[str] = Counter()
    try:
        job = _drive_every_path(backend, app, retried)
    finally:  # when a path stalls too: the log then shows which rule broke
        changes = history.check(retried)
    assert {name: _path(changes[job_id]) for name, job_id in job.items()} == {
        "done": ["queued", "running", "completed"],
        "failed": ["queued", "running", "failed", "queued", "running", "failed"],
        "flaky": ["queued", "running", "retrying", "queued", "running", "completed"],
        "stopped": ["queued", "running", "canceled"],
        "handed": ["queued", "running", "queued", "running", "completed"],
        "idle": ["queued", "canceled", "queued", "canceled"],
        "later": ["scheduled", "canceled"],
        "lost_retry": ["queued", "running", "retrying", "queued", "running", "completed"],
        "lost_fail": ["queued", "running", "failed"],
        "lost_cancel": ["queued", "running", "canceled"],
    }
    assert {name: [a.outcome for a in app.get(i).attempts] for name, i in job.items()} == {
        "done": ["completed"],
        "failed": ["error", "error"],
        "flaky": ["error", "completed"],
        "stopped": ["canceled"],
        "handed": ["shutdown", "completed"],
        "idle": [],
        "later": [],
        "lost_retry": ["worker_lost", "completed"],
        "lost_fail": ["worker_lost"],
        "lost_cancel": ["worker_lost"],
    }


def _drive_every_path(backend: Backend, app: Conveyor, retried: Counter[str]) -> dict[str, str]:
    """Finish, recover, cancel, retry and hand back jobs with real workers; the jobs by name."""
    finisher = backend.worker("--grace", "0.3")  # the job types' own queues
    doomed = backend.worker("--queues", "doomed")  # killed mid-run below
    done = app.enqueue("add", {"a": 1}).id
    failed = app.enqueue("permanent", {}).id
    flaky = app.enqueue("flaky", {"fail_times": 1}).id
    stopped = app.enqueue("sleeper", {"seconds": 60}).id
    handed = app.enqueue("ledger", {"seconds": 60, "later_seconds": 0.1}).id
    idle = app.enqueue("add", {"a": 2}, queue="unserved").id
    later = app.enqueue("add", {"a": 3}, delay=3600).id
    lost_retry = app.enqueue("ledger", {"seconds": 60, "later_seconds": 0.1}, queue="doomed").id
    lost_fail = app.enqueue("sleeper", {"seconds": 60}, queue="doomed").id
    lost_cancel = app.enqueue("ledger", {"seconds": 60}, queue="doomed").id

    # The client: cancel a queued job, retry it, cancel it again; cancel a scheduled one.
    app.cancel(idle)
    app.retry(idle)
    retried[idle] += 1
    app.cancel(later)
    app.cancel(idle)

    # Finishes: completed; failed, retried by hand and failed again; retried by its policy.
    wait_for(lambda: _state(app, failed) is State.FAILED, what="the job to fail")
    app.retry(failed)
    retried[failed] += 1
    wait_for(lambda: _state(app, failed) is State.FAILED, what="the job to fail again")
    wait_for(lambda: _state(app, done) is _state(app, flaky) is State.COMPLETED, what="the rest")

    # A running job canceled; a running job handed back at shutdown.
    wait_for(lambda: _state(app, stopped) is _state(app, handed) is State.RUNNING)
    app.cancel(stopped)
    wait_for(lambda: _state(app, stopped) is State.CANCELED, what="the cancel to stop it")
    finisher.signal(signal.SIGTERM)
    assert finisher.wait(20) == 0
    assert _state(app, handed) is State.QUEUED

    # Recovery: a worker killed with three jobs running, one of them asked to cancel after.
    lost = [lost_retry, lost_fail, lost_cancel]
    wait_for(lambda: all(_state(app, i) is State.RUNNING for i in lost), what="doomed runs")
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    assert app.cancel(lost_cancel).cancel_requested
    rescuer = backend.worker("--queues", "default,doomed")
    job = {
        "done": done, "failed": failed, "flaky": flaky, "stopped": stopped, "handed": handed,
        "idle": idle, "later": later, "lost_retry": lost_retry, "lost_fail": lost_fail,
        "lost_cancel": lost_cancel,
    }  # fmt: skip
    wait_for(lambda: all(app.get(i).terminal for i in job.values()), timeout=30, what="the end")
    assert rescuer.stop() == 0
    return job


# -- cancels racing finishes -----------------------------------------------------------------

WAVES = 6
WAVE = 20  # jobs per wave: one per worker slot, so all of a wave run at once


def ledger(seconds: float) -> EnqueueRequest:
    return EnqueueRequest("ledger", {"seconds": seconds})


def _cancel_at(app: Conveyor, job_id: str, at: float) -> tuple[str, str]:
    """Cancel the job at monotonic time ``at``: (job id, what the cancel found)."""
    time.sleep(max(0.0, at - time.monotonic()))
    try:
        view = app.cancel(job_id)
    except IllegalTransition:
        return job_id, "finished"
    return job_id, view.state.value  # canceled, or running: asked to stop


def test_cancels_racing_finishes_leave_one_outcome(
    db_backend: Backend, record: Callable[[Backend], History]
) -> None:
    history = record(db_backend)
    app = db_backend.app()
    worker = db_backend.worker("--concurrency", str(WAVE))
    rng = random.Random(14)
    found: list[tuple[str, str]] = []
    ids: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(WAVES):
            durations = [rng.uniform(0.05, 0.8) for _ in range(WAVE)]
            wave = [h.id for h in app.enqueue_many([ledger(s) for s in durations])]
            start = time.monotonic()
            # Two cancels per job a few ms apart, 0 to 0.9 s after the enqueue: before the
            # claim, during the run, as it finishes, after it finished.
            times = [start + rng.uniform(0, 0.9) for _ in wave]
            plan = [(at, i) for at, i in zip(times, wave, strict=True)]
            plan += [(at + rng.uniform(0, 0.01), i) for at, i in plan]
            cancels = [pool.submit(_cancel_at, app, i, at) for at, i in sorted(plan)]
            found += [c.result() for c in cancels]  # any other error fails the test
            wait_for(lambda w=wave: all(app.get(i).terminal for i in w), what="the wave")
            ids += wave
    assert worker.stop() == 0

    changes = history.check(Counter())
    paths = Counter(" ".join(_path(changes[i])) for i in ids)
    asked = {job_id for job_id, what in found if what == State.RUNNING.value}
    after_asking = Counter(_path(changes[i])[-1] for i in asked)
    print(f"\n{len(ids)} jobs: {dict(paths)}; asked to stop while running: {dict(after_asking)}")
    assert set(paths) <= {
        "queued canceled",
        "queued running canceled",
        "queued running completed",
    }, paths
    # The race was run: cancels landed before the claim, during the run and after the end;
    # against a cancel asked of a running job, the cancel won sometimes and the finish others.
    assert len(paths) == 3, paths
    assert {what for _, what in found} == {"canceled", "running", "finished"}
    assert after_asking["canceled"] and after_asking["completed"], after_asking
