"""Outages: Redis restarted empty, PostgreSQL stopped mid-run, with real worker processes.

Each test reads what the `ledger` job type wrote (a line as each attempt starts and one as it
ends, with the job, the attempt number and the process) next to the database's rows.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from conveyor import DatabaseUnavailable, State
from conveyor.client import EnqueueRequest
from tests.conftest import Backend, _drop_prefix, _truncate, wait_for
from tests.faults.conftest import Ledger, all_terminal, private_database, ran_in
from tests.servers import PrivatePostgres, PrivateRedis


def test_redis_restarted_empty_with_jobs_queued_and_running(
    pg_database: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    b = Backend("postgres+private-redis", pg_database, private_redis.url, "faultr", tmp_path)
    try:
        _truncate(pg_database)
        ledger = Ledger(b.marks)
        app = b.app()
        b.worker("--concurrency", "4")
        ids = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {"seconds": 0.5})] * 20)]
        wait_for(lambda: len(ledger.starts()) >= 4, what="jobs running")
        private_redis.stop()
        restarted_at = time.monotonic()
        private_redis.start()  # empty
        wait_for(lambda: all_terminal(app, ids), timeout=40, what="recovery")
        recovery_s = time.monotonic() - restarted_at
        print(f"\nRedis restarted empty: recovered in {recovery_s:.2f} s")
        assert all(app.get(i).state is State.COMPLETED for i in ids)
        ledger.assert_once_per_attempt()
        assert all(ledger.jobs_ended()[i] == 1 for i in ids)
        assert recovery_s < 20, recovery_s
    finally:
        b.close()


@pytest.mark.parametrize("dispatch", ["database", "redis"])
def test_postgres_stopped_during_a_run(
    private_pg: PrivatePostgres, dispatch: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = private_database(private_pg)
    redis_url = request.getfixturevalue("redis_server") if dispatch == "redis" else None
    prefix = f"faultp{uuid.uuid4().hex[:8]}"
    b = Backend(f"private-postgres+{dispatch}", url, redis_url, prefix, tmp_path)
    lease_s = 10  # the outage is shorter than a lease
    b.extra_env["CONVEYOR_LEASE_SECONDS"] = str(lease_s)
    try:
        ledger = Ledger(b.marks)
        app = b.app()
        worker = b.worker("--concurrency", "10")
        requests = [EnqueueRequest("ledger", {"seconds": 2.0})] * 10
        running = [h.id for h in app.enqueue_many(requests)]
        wait_for(lambda: len(ledger.starts()) == 10, what="all running")
        waiting = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {})] * 5)]  # no slot
        assert not ledger.ends()
        log = worker.log_path
        tried = log.read_text().count("claim failed")
        private_pg.stop("immediate")

        # The attempts end while the database is down: their results wait in the worker.
        wait_for(lambda: len(ledger.ends()) == 10, what="the attempts to end during the outage")
        wait_for(  # the worker is alive, has free slots and queued jobs, and tries to claim
            lambda: log.read_text().count("claim failed") > tried,
            what="a claim tried during the outage",
        )
        assert ledger.jobs_started() == set(running)  # ... and claims nothing
        refused_at = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            app.enqueue("ledger", {})
        assert time.monotonic() - refused_at < 5  # enqueue fails fast
        assert not private_pg.running() and worker.proc.poll() is None
        assert ledger.jobs_started() == set(running)

        private_pg.start()
        back_at = time.monotonic()
        wait_for(lambda: all_terminal(app, running), timeout=30, what="results written")
        recovery_s = time.monotonic() - back_at
        print(f"\nPostgreSQL back ({dispatch} dispatch): results written in {recovery_s:.2f} s")
        for job_id in running:  # the results held across the outage, written once
            view = app.get(job_id)
            assert view.state is State.COMPLETED and view.result == job_id
            assert [a.outcome for a in view.attempts] == ["completed"]
            assert ran_in(view.worker_id, worker)
        assert recovery_s < lease_s, recovery_s
        # and the same worker goes on claiming, without a restart: the jobs that waited run at
        # once (ids it fetched from Redis while the claim failed are kept, not left pending
        # in the stream for a lease)
        wait_for(lambda: all_terminal(app, waiting), timeout=lease_s, what="the rest")
        rest_s = time.monotonic() - back_at
        print(f"the jobs that waited: done {rest_s:.2f} s after it came back")
        assert rest_s < lease_s / 2, rest_s
        assert app.enqueue("ledger", {}).wait(timeout=20).state is State.COMPLETED
        ledger.assert_once_per_attempt()
        assert set(ledger.jobs_ended().values()) == {1}
        assert worker.proc.poll() is None
    finally:
        b.close()
        if redis_url:
            _drop_prefix(redis_url, prefix)
