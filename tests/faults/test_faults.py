"""Nothing lost, nothing stranded: crashes, freezes and signals, with real processes.

Each test reads what the `ledger` job type wrote (a line as each attempt starts and one as it
ends, with the job, the attempt number and the process) next to the database's rows.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import select

from conveyor import Conveyor, State, faults
from conveyor.client import EnqueueRequest
from conveyor.core import metrics
from conveyor.dispatch import keys
from conveyor.store.tables import counters, jobs, workers
from tests.conftest import ROOT, Backend, WorkerProcess, wait_for
from tests.faults.conftest import Ledger, all_terminal, ran_in


def _row(app: Conveyor, job_id: str) -> dict[str, Any]:
    """The job's row as stored (``uncharged`` included, which views do not show)."""
    with app.client.jobs.engine.connect() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
    return dict(row._mapping)


def _charged(app: Conveyor, job_id: str) -> int:
    row = _row(app, job_id)
    return int(row["attempt"] - row["uncharged"])


def _fenced(app: Conveyor) -> float:
    """conveyor_writes_fenced_total as the workers have flushed it."""
    with app.client.jobs.engine.connect() as conn:
        value = conn.execute(
            select(counters.c.value).where(counters.c.metric == metrics.FENCED)
        ).scalar()
    return float(value or 0)


def _heartbeat(app: Conveyor, worker: WorkerProcess) -> datetime | None:
    with app.client.jobs.engine.connect() as conn:
        return conn.execute(
            select(workers.c.heartbeat_at).where(workers.c.pid == worker.proc.pid)
        ).scalar()


# -- at-least-once, once per attempt ---------------------------------------------------------


def test_sigkill_worker_mid_job(fault_backend: Backend, ledger: Ledger) -> None:
    b = fault_backend
    app = b.app()
    first = b.worker("--concurrency", "10")
    requests = [EnqueueRequest("ledger", {"seconds": 60, "later_seconds": 0.2})] * 10
    ids = [h.id for h in app.enqueue_many(requests)]
    wait_for(lambda: len(ledger.starts()) == 10, what="all ten running")
    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait()
    second = b.worker("--concurrency", "10")
    wait_for(lambda: ledger.starts().total() == 20, timeout=30, what="every job run again")
    ledger.assert_once_per_attempt()  # the rerun is the next attempt, never the same again
    wait_for(lambda: all_terminal(app, ids), timeout=30, what="recovery")
    recovery_s = time.monotonic() - killed_at
    print(f"\nSIGKILL mid-job: recovered in {recovery_s:.2f} s")
    ledger.assert_once_per_attempt()
    for job_id in ids:
        view = app.get(job_id)
        assert view.state is State.COMPLETED and view.result == job_id
        assert [(a.attempt, a.outcome) for a in view.attempts] == [
            (1, "worker_lost"),
            (2, "completed"),
        ]
        killed, rerun = (job_id, 1), (job_id, 2)
        assert ledger.starts()[killed] == 1 and ledger.ends()[killed] == 0  # cut short
        assert ledger.pid("start", killed) == first.proc.pid
        assert ledger.starts()[rerun] == 1 and ledger.ends()[rerun] == 1
        assert ledger.pid("end", rerun) == second.proc.pid
        assert ledger.jobs_ended()[job_id] == 1  # completed exactly once
    # lease (3 s) + reconcile interval (0.5 s) + backoff window (<= 0.5 s) + the rerun (0.2 s)
    assert recovery_s < 3 + 0.5 + 0.5 + 0.2 + 3, recovery_s


# -- graceful shutdown: one test per branch ------------------------------------------------


def test_sigterm_lets_jobs_shorter_than_the_grace_complete(
    fault_backend: Backend, ledger: Ledger
) -> None:
    b = fault_backend
    app = b.app()
    worker = b.worker("--concurrency", "4", "--grace", "15")
    running = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 2.5})] * 4)]
    wait_for(lambda: len(ledger.starts()) == 4, what="four jobs running")
    waiting = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {})] * 4)]  # no slot
    assert not ledger.ends()  # every job is mid-run when the signal comes
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    for job_id in running:  # given their time: completed, nothing handed back
        view = app.get(job_id)
        assert view.state is State.COMPLETED, view
        assert [a.outcome for a in view.attempts] == ["completed"]
        assert ledger.starts()[(job_id, 1)] == 1 and ledger.ends()[(job_id, 1)] == 1
    for job_id in waiting:  # a stopping worker claims nothing more
        assert app.get(job_id).state is State.QUEUED and _row(app, job_id)["attempt"] == 0
    assert ledger.jobs_started() == set(running)


def test_sigterm_hands_back_jobs_longer_than_the_grace(
    fault_backend: Backend, ledger: Ledger
) -> None:
    b = fault_backend
    app = b.app()
    first = b.worker("--concurrency", "3", "--grace", "1")
    requests = [EnqueueRequest("ledger", {"seconds": 60, "later_seconds": 0.2})] * 3
    ids = [h.id for h in app.enqueue_many(requests)]
    wait_for(lambda: len(ledger.starts()) == 3, what="three jobs running")
    first.signal(signal.SIGTERM)
    signaled_at = time.monotonic()
    assert first.wait(20) == 0
    stop_s = time.monotonic() - signaled_at
    assert 1 <= stop_s < 10, stop_s  # it waited out the grace, not the jobs
    for job_id in ids:  # handed back: queued again, the attempt recorded and not charged
        view = app.get(job_id)
        assert view.state is State.QUEUED
        assert [(a.attempt, a.outcome) for a in view.attempts] == [(1, "shutdown")]
        assert _charged(app, job_id) == 0
        assert ledger.starts()[(job_id, 1)] == 1 and not ledger.ends()[(job_id, 1)]
    second = b.worker("--concurrency", "3")
    wait_for(lambda: all_terminal(app, ids), timeout=20, what="the handed-back jobs done")
    ledger.assert_once_per_attempt()
    for job_id in ids:  # completed by the other worker, on the next attempt
        view = app.get(job_id)
        assert view.state is State.COMPLETED
        outcomes = [(a.attempt, a.outcome) for a in view.attempts]
        assert outcomes == [(1, "shutdown"), (2, "completed")]
        assert ran_in(view.attempts[0].worker_id, first)
        assert ran_in(view.attempts[1].worker_id, second)
        assert ledger.pid("end", (job_id, 2)) == second.proc.pid
        assert _charged(app, job_id) == 1


def test_a_second_signal_hands_back_at_once(fault_backend: Backend, ledger: Ledger) -> None:
    b = fault_backend
    app = b.app()
    worker = b.worker("--concurrency", "2", "--grace", "60")
    ids = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 60})] * 2)]
    wait_for(lambda: len(ledger.starts()) == 2, what="two jobs running")
    worker.signal(signal.SIGTERM)
    beat = _heartbeat(app, worker)
    wait_for(lambda: _heartbeat(app, worker) != beat, what="a heartbeat after the signal")
    # alive and past the first signal: the grace holds, the jobs keep running
    assert worker.proc.poll() is None
    assert all(app.get(i).state is State.RUNNING for i in ids)
    worker.signal(signal.SIGINT)
    signaled_at = time.monotonic()
    assert worker.wait(10) == 0
    exit_s = time.monotonic() - signaled_at
    assert exit_s < 5, exit_s
    for job_id in ids:
        view = app.get(job_id)
        assert view.state is State.QUEUED
        assert [a.outcome for a in view.attempts] == ["shutdown"]
        assert _charged(app, job_id) == 0
    assert not ledger.ends()


# -- fencing -------------------------------------------------------------------------------


def test_frozen_worker_past_its_lease_is_fenced(fault_backend: Backend, ledger: Ledger) -> None:
    b = fault_backend
    app = b.app()
    frozen = b.worker()
    handle = app.enqueue("ledger", {"seconds": 1.0, "later_seconds": 4.0})
    first, second = (handle.id, 1), (handle.id, 2)
    wait_for(lambda: ledger.starts()[first] == 1, what="the first run")
    frozen.signal(signal.SIGSTOP)
    replacement = b.worker()
    wait_for(lambda: ledger.starts()[second] == 1, timeout=30, what="the run started elsewhere")
    before = _row(app, handle.id)
    assert (before["state"], before["attempt"]) == (State.RUNNING.value, 2)
    assert ran_in(before["worker_id"], replacement)
    history = app.get(handle.id).attempts
    assert [(a.attempt, a.outcome) for a in history] == [(1, "worker_lost")]
    fenced = _fenced(app)

    frozen.signal(signal.SIGCONT)
    wait_for(lambda: ledger.ends()[first] == 1, what="the stale run to end")  # one duplicate
    wait_for(lambda: _fenced(app) > fenced, what="its finish to be tried and rejected")
    after = _row(app, handle.id)  # the attempt that replaced it is untouched (but renewed)
    changed = {k: (before[k], v) for k, v in after.items() if before[k] != v}
    assert set(changed) <= {"lease_expires_at"}, changed
    assert app.get(handle.id).attempts == history

    view = app.wait(handle.id, timeout=30)
    assert view.state is State.COMPLETED and ran_in(view.worker_id, replacement)
    assert [(a.attempt, a.outcome) for a in view.attempts] == [(1, "worker_lost"), (2, "completed")]
    assert ran_in(view.attempts[0].worker_id, frozen)
    ledger.assert_once_per_attempt()
    assert ledger.ends()[second] == 1 and ledger.pid("end", second) == replacement.proc.pid
    assert ledger.pid("end", first) == frozen.proc.pid


# -- dispatch repaired -----------------------------------------------------------------------


def test_enqueuer_killed_between_commit_and_dispatch(
    fault_backend: Backend, ledger: Ledger
) -> None:
    b = fault_backend
    code = (
        "from tests.apps.jobs import app; from conveyor import Conveyor;"
        "from conveyor.core.settings import Settings;"
        "c = Conveyor(Settings()); c.registry = app.registry;"
        "print(c.enqueue('ledger', {}).id, flush=True)"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", code], env=b.env(**{faults.ENV: "after_commit"}), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        crashed.returncode == faults.EXIT_STATUS and crashed.stdout == ""
    )  # died before it could answer
    app = b.app()
    (job,) = app.list(type="ledger").items
    assert job.state is State.QUEUED
    client = redis.Redis.from_url(b.redis_url or "")
    assert client.xlen(keys.queue_stream(b.prefix, "default")) == 0  # never dispatched
    b.worker()
    started = time.monotonic()
    assert app.wait(job.id, timeout=30).state is State.COMPLETED
    recovery_s = time.monotonic() - started
    print(f"\nenqueuer killed after commit: ran {recovery_s:.2f} s after a worker started")
    assert recovery_s < 10
    assert ledger.jobs_ended()[job.id] == 1


def test_dispatch_entry_without_a_job_row_is_never_executed(
    fault_backend: Backend, ledger: Ledger
) -> None:
    b = fault_backend
    app = b.app()
    client = redis.Redis.from_url(b.redis_url or "")
    ghost = "01a216ff-0000-7000-8000-000000000000"
    client.xadd(keys.queue_stream(b.prefix, "default"), {"id": ghost})
    b.worker()
    real = app.enqueue("ledger", {})
    assert real.wait(timeout=20).state is State.COMPLETED
    assert ledger.jobs_started() == {real.id}
