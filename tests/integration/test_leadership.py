"""One process at a time performs the maintenance duties; another takes over on expiry."""

from __future__ import annotations

import time

from conveyor.store.leases import LeaseStore
from tests.conftest import Backend, wait_for


def test_one_holder_at_a_time_and_takeover(db_backend: Backend) -> None:
    app = db_backend.app()
    leases = LeaseStore(app.client.jobs.engine)
    assert leases.acquire("maintenance", "a", ttl_s=1.0)
    assert not leases.acquire("maintenance", "b", ttl_s=1.0)
    assert leases.acquire("maintenance", "a", ttl_s=1.0)  # renewal
    time.sleep(1.2)  # a stops renewing
    assert leases.acquire("maintenance", "b", ttl_s=1.0)
    assert not leases.acquire("maintenance", "a", ttl_s=1.0)
    leases.release("maintenance", "b")
    assert leases.acquire("maintenance", "a", ttl_s=1.0)


def test_a_killed_leader_is_replaced_and_due_jobs_still_run(db_backend: Backend) -> None:
    import signal

    b = db_backend
    app = b.app()
    leader = b.worker()
    wait_for(lambda: _holder(app) is not None, what="a leader")
    follower = b.worker()
    time.sleep(1)
    first = _holder(app)
    handle = app.enqueue("add", {"a": 1}, delay="0.5s")
    assert handle.wait(timeout=20).result == 1
    (leader if first and str(leader.proc.pid) in first else follower).signal(signal.SIGKILL)
    later = app.enqueue("add", {"a": 2}, delay="0.5s")  # promotion needs a (new) leader
    assert later.wait(timeout=20).result == 2
    assert _holder(app) != first


def _holder(app) -> str | None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from conveyor.store.tables import leases

    with app.client.jobs.engine.connect() as conn:
        return conn.execute(select(leases.c.holder)).scalar()


def test_a_scheduler_process_performs_the_duties_too(db_backend: Backend) -> None:
    from conveyor import State

    b = db_backend
    app = b.app()
    b.worker(command="scheduler")  # no worker at all
    handle = app.enqueue("add", {"a": 1}, delay="0.5s")
    wait_for(lambda: app.get(handle.id).state is State.QUEUED, timeout=15, what="promotion")
