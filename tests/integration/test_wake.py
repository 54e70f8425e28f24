"""Database dispatch on PostgreSQL: an enqueue wakes idle workers (LISTEN/NOTIFY) instead of
leaving its job to the next poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from conveyor import State
from conveyor.client import EnqueueRequest
from conveyor.store import make_engine, notify
from conveyor.store.notify import WAKE_CHANNEL, Waker
from tests.conftest import Backend, _backend, libpq_url, wait_for


@pytest.fixture
def pg_alone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgres", request, tmp_path)


@pytest.fixture
def engine(pg_database: str) -> Iterator[Engine]:
    made = make_engine(pg_database)
    yield made
    made.dispose()


def _listening(backend: Backend) -> bool:
    """Whether a session of this database has LISTENed on the wake-up channel."""
    with psycopg.connect(libpq_url(backend.database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        ).fetchone()
    return bool(row and row[0])


def _notices(conn: psycopg.Connection, wait_s: float = 0.5) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=wait_s) if n.channel == WAKE_CHANNEL]


def test_an_enqueue_wakes_an_idle_worker_long_before_its_next_poll(pg_alone: Backend) -> None:
    app = pg_alone.app()
    pg_alone.worker(CONVEYOR_POLL_SECONDS="30")
    assert app.enqueue("add", {"a": 1, "b": 1}).wait(timeout=20).state is State.COMPLETED
    wait_for(lambda: _listening(pg_alone), timeout=10, what="the worker's LISTEN connection")
    time.sleep(1.0)  # past its last claim: idle in a 30 s wait, woken only by a notice
    started = time.monotonic()
    view = app.enqueue("add", {"a": 2, "b": 3}).wait(timeout=20)
    took = time.monotonic() - started
    assert view.state is State.COMPLETED and view.result == 5
    assert took < 5, f"the job waited {took:.1f} s: the worker was not woken"


def test_inserts_notify_each_queue_of_their_queued_jobs_once(pg_alone: Backend) -> None:
    app = pg_alone.app()
    with psycopg.connect(libpq_url(pg_alone.database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {WAKE_CHANNEL}")
        app.enqueue_many(
            [EnqueueRequest("add", {"a": i, "b": 0}) for i in range(5)]
            + [EnqueueRequest("sync_add", {"a": 1, "b": 1})]  # queue "low"
        )
        assert sorted(_notices(listener)) == ["default", "low"]
        app.enqueue("add", {"a": 1, "b": 1}, delay=3600)  # scheduled: nothing to claim yet
        assert _notices(listener) == []
        app.enqueue("add", {"a": 1, "b": 1}, idempotency_key="k1")
        assert _notices(listener) == ["default"]
        app.enqueue("add", {"a": 1, "b": 1}, idempotency_key="k1")  # a repeat creates nothing
        assert _notices(listener) == []


def test_enqueues_through_redis_dispatch_send_no_notice(pg_redis: Backend) -> None:
    app = pg_redis.app()
    with psycopg.connect(libpq_url(pg_redis.database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {WAKE_CHANNEL}")
        app.enqueue("add", {"a": 1, "b": 1})
        assert _notices(listener) == []


def test_the_waker_wakes_for_its_queues_only(engine: Engine, pg_database: str) -> None:
    waker = Waker(engine, ["default"])
    try:
        waker.listen()
        with psycopg.connect(libpq_url(pg_database), autocommit=True) as other:
            other.execute("SELECT pg_notify(%s, 'low')", (WAKE_CHANNEL,))
            started = time.monotonic()
            assert waker.wait(0.3) is False
            assert time.monotonic() - started >= 0.25
            other.execute("SELECT pg_notify(%s, 'default')", (WAKE_CHANNEL,))
            started = time.monotonic()
            assert waker.wait(5) is True
            assert time.monotonic() - started < 1
    finally:
        waker.close()


def test_the_waker_polls_while_its_connection_is_lost_then_listens_again(
    engine: Engine, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "WAKER_RETRY_S", 0.5)
    waker = Waker(engine, ["default"])
    try:
        waker.listen()
        pid = waker._conn.info.backend_pid
        with psycopg.connect(libpq_url(pg_database), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert waker.wait(0.2) is False  # the loss is noticed; the wait still lasts
            assert waker._conn is None
            time.sleep(0.5)
            waker.listen()  # reconnected after WAKER_RETRY_S
            assert waker._conn is not None and waker._conn.info.backend_pid != pid
            admin.execute("SELECT pg_notify(%s, 'default')", (WAKE_CHANNEL,))
            assert waker.wait(5) is True
    finally:
        waker.close()


def test_notices_received_before_a_claim_are_read_and_dropped(
    engine: Engine, pg_database: str
) -> None:
    waker = Waker(engine, ["default"])
    try:
        waker.listen()
        with psycopg.connect(libpq_url(pg_database), autocommit=True) as other:
            for _ in range(3):  # jobs enqueued while the worker was busy
                other.execute("SELECT pg_notify(%s, 'default')", (WAKE_CHANNEL,))
            time.sleep(0.2)
            waker.listen()  # before the claim that covers those jobs
            started = time.monotonic()
            assert waker.wait(0.3) is False  # nothing new: no stale wake-up
            assert time.monotonic() - started >= 0.25
    finally:
        waker.close()
