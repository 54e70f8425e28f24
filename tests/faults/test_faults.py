"""Nothing lost, nothing stranded: crashes, freezes and outages, with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from sqlalchemy import select

from conveyor import State
from conveyor.client import EnqueueRequest
from conveyor.dispatch import keys
from conveyor.store.tables import counters
from tests.conftest import ROOT, Backend, wait_for
from tests.faults.conftest import Ledger, private_database
from tests.servers import PrivatePostgres, PrivateRedis


def _all_terminal(app, ids: list[str]) -> bool:  # type: ignore[no-untyped-def]
    return all(app.get(i).terminal for i in ids)


def test_sigkill_worker_mid_job(fault_backend: Backend, ledger: Ledger) -> None:
    b = fault_backend
    app = b.app()
    first = b.worker("--concurrency", "10")
    ids = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 1.5})] * 10)]
    wait_for(lambda: len(ledger.starts()) == 10, what="all ten running")
    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    b.worker("--concurrency", "10")
    wait_for(lambda: _all_terminal(app, ids), timeout=30, what="recovery")
    recovery_s = time.monotonic() - killed_at
    print(f"\nSIGKILL mid-job: recovered in {recovery_s:.2f} s")
    views = [app.get(i) for i in ids]
    assert all(v.state is State.COMPLETED for v in views)
    assert all([a.outcome for a in v.attempts] == ["worker_lost", "completed"] for v in views)
    assert set(ledger.ends().values()) == {1}  # the killed runs never finished: no duplicate
    # lease (3 s) + reconcile interval (0.5 s) + backoff window (<= 0.5 s) + the job (1.5 s)
    assert recovery_s < 3 + 0.5 + 0.5 + 1.5 + 3, recovery_s


def test_sigterm_busy_worker_hands_work_back(fault_backend: Backend, ledger: Ledger) -> None:
    b = fault_backend
    app = b.app()
    worker = b.worker("--concurrency", "5", "--grace", "1")
    ids = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 0.8})] * 20)]
    wait_for(lambda: len(ledger.starts()) >= 5, what="a busy worker")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert not any(app.get(i).state is State.RUNNING for i in ids)  # nothing left running
    b.worker("--concurrency", "10")
    wait_for(lambda: _all_terminal(app, ids), timeout=30, what="the rest done")
    assert all(app.get(i).state is State.COMPLETED for i in ids)
    assert set(ledger.ends().values()) == {1}
    for i in ids:  # a handed-back attempt is recorded and not charged
        outcomes = [a.outcome for a in app.get(i).attempts]
        assert outcomes in (["completed"], ["shutdown", "completed"]), outcomes


def test_redis_restarted_empty_with_jobs_queued_and_running(
    pg_database: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    b = Backend("postgres+private-redis", pg_database, private_redis.url, "faultr", tmp_path)
    try:
        from tests.conftest import _truncate

        _truncate(pg_database)
        ledger = Ledger(b.marks)
        app = b.app()
        b.worker("--concurrency", "4")
        ids = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 0.5})] * 20)]
        wait_for(lambda: len(ledger.starts()) >= 4, what="jobs running")
        private_redis.stop()
        restarted_at = time.monotonic()
        private_redis.start()  # empty
        wait_for(lambda: _all_terminal(app, ids), timeout=40, what="recovery")
        recovery_s = time.monotonic() - restarted_at
        print(f"\nRedis restarted empty: recovered in {recovery_s:.2f} s")
        assert all(app.get(i).state is State.COMPLETED for i in ids)
        assert set(ledger.ends().values()) == {1}
        assert recovery_s < 20, recovery_s
    finally:
        b.close()


def test_postgres_stopped_during_a_run(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    url = private_database(private_pg)
    b = Backend("private-postgres", url, None, "faultp", tmp_path)
    b.extra_env["CONVEYOR_LEASE_SECONDS"] = "15"  # the outage is shorter than a lease
    try:
        ledger = Ledger(b.marks)
        app = b.app()
        b.worker("--concurrency", "10")
        ids = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 1.0})] * 10)]
        wait_for(lambda: len(ledger.starts()) == 10, what="all running")
        private_pg.stop("immediate")
        time.sleep(3)  # the jobs finish while the database is down
        private_pg.start()
        back_at = time.monotonic()
        wait_for(lambda: _all_terminal(app, ids), timeout=40, what="results written")
        recovery_s = time.monotonic() - back_at
        print(f"\nPostgreSQL back: results written in {recovery_s:.2f} s")
        views = [app.get(i) for i in ids]
        assert all(v.state is State.COMPLETED and v.result == v.id for v in views)
        assert all([a.outcome for a in v.attempts] == ["completed"] for v in views)
        assert set(ledger.ends().values()) == {1}
        assert recovery_s < 15, recovery_s
        # and the worker goes on claiming without a restart
        assert app.enqueue("ledger", {}).wait(timeout=20).state is State.COMPLETED
    finally:
        b.close()


def test_frozen_worker_past_its_lease_is_fenced(fault_backend: Backend, ledger: Ledger) -> None:
    b = fault_backend
    app = b.app()
    frozen = b.worker()
    handle = app.enqueue("ledger", {"seconds": 2.0})
    wait_for(lambda: ledger.starts()[handle.id] == 1, what="the first run")
    frozen.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    b.worker()
    view = app.wait(handle.id, timeout=30)  # recovered by the second worker
    print(f"\nworker frozen: job completed elsewhere {time.monotonic() - stopped_at:.2f} s later")
    frozen.signal(signal.SIGCONT)
    assert view.state is State.COMPLETED
    assert [a.outcome for a in view.attempts] == ["worker_lost", "completed"]
    wait_for(lambda: ledger.ends()[handle.id] == 2, timeout=15, what="the stale run to end")
    time.sleep(1.5)  # its finish is written (and rejected) within a flush
    after = app.get(handle.id)
    assert after.state is State.COMPLETED and after.attempts == view.attempts
    with app.client.jobs.engine.connect() as conn:
        fenced = conn.execute(
            select(counters.c.value).where(counters.c.metric == "writes_fenced_total")
        ).scalar()
    assert fenced and fenced >= 1


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
        [sys.executable, "-c", code], env=b.env(CONVEYOR_FAULT="after_commit"), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert crashed.returncode == 70 and crashed.stdout == ""  # died before it could answer
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
    assert ledger.ends()[job.id] == 1


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
    assert set(ledger.starts()) == {real.id}
