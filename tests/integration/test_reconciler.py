"""Each reconciler duty, one ``run_once(now)`` at a time against real servers; then the loop.

``now`` is passed in: no test waits for a lease or a retention period to pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from conveyor import Conveyor, JobNotFound, State
from conveyor.core.outcome import AttemptOutcome
from conveyor.core.settings import Settings
from conveyor.dispatch import keys
from conveyor.dispatch.redis import RedisDispatcher
from conveyor.reconciler import (
    LEASE_NAME,
    Cleaner,
    Leadership,
    Promoter,
    Reconciler,
    Rescuer,
    StreamFeeder,
    build_reconciler,
)
from conveyor.store import (
    ClaimStore,
    Engine,
    Finish,
    RunStore,
    UpkeepStore,
    WorkerStore,
    make_engine,
)
from conveyor.store.clock import DbClock
from conveyor.store.leases import LeaseStore
from tests.apps.jobs import app as jobs_app
from tests.conftest import Backend, wait_for


class Recorded:
    """A hand-off that keeps what it was given (or refuses it, as a Redis outage would)."""

    def __init__(self, refuse: bool = False) -> None:
        self.pushed: list[tuple[str, str]] = []
        self.refuse = refuse

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        if self.refuse:
            raise ConnectionError("redis is down")
        self.pushed += items


def _claim(app: Conveyor, ids: list[str], at: datetime, lease_s: float = 1.0) -> None:
    claimed = ClaimStore(app.client.jobs.engine).claim_ids(ids, "worker-a", at, lease_s)
    assert sorted(j.id for j in claimed) == sorted(ids)


def _reconciler(
    engine: Engine,
    settings: Settings,
    *,
    leases: LeaseStore | None = None,
    streams: RedisDispatcher | None = None,
) -> Reconciler:
    """A reconciler on ``engine`` serving "default" (``streams``: under Redis dispatch)."""
    return build_reconciler(
        upkeep=UpkeepStore(engine),
        runs=RunStore(engine),
        workers=WorkerStore(engine),
        leases=leases,
        handoff=streams,
        streams=streams,
        clock=DbClock(engine, sync_s=None),
        io=asyncio.to_thread,
        registry=jobs_app.registry,
        settings=settings,
        holder="test",
        queues=["default"],
    )


# -- promotion ------------------------------------------------------------------------------


def test_the_promoter_queues_a_due_job_and_pushes_it(db_backend: Backend) -> None:
    app = db_backend.app()
    due = app.enqueue("add", {"a": 1}, delay="1h")
    later = app.enqueue("add", {"a": 2}, delay="3h")
    handoff = Recorded()
    promoter = Promoter(UpkeepStore(app.client.jobs.engine), handoff)
    now = datetime.now(UTC) + timedelta(hours=2)
    assert promoter.run_once(now) == 1
    assert app.get(due.id).state is State.QUEUED
    assert app.get(later.id).state is State.SCHEDULED  # not due yet
    assert handoff.pushed == [("default", due.id)]
    assert promoter.run_once(now) == 0  # promoted once


def test_a_failed_push_is_logged_and_the_job_stays_queued(
    db_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app = db_backend.app()
    due = app.enqueue("add", {"a": 1}, delay="1h")
    promoter = Promoter(UpkeepStore(app.client.jobs.engine), Recorded(refuse=True))
    with caplog.at_level(logging.WARNING, logger="conveyor.maintenance"):
        assert promoter.run_once(datetime.now(UTC) + timedelta(hours=2)) == 1
    assert app.get(due.id).state is State.QUEUED  # the feeder pushes it again
    assert "dispatch of 1 promoted job(s) failed: redis is down" in caplog.messages


# -- rescue ---------------------------------------------------------------------------------


def test_the_rescuer_ends_expired_runs_by_policy_and_cancel(db_backend: Backend) -> None:
    app = db_backend.app()
    engine = app.client.jobs.engine
    jobs = {
        "retried": app.enqueue("flaky", {"fail_times": 0}).id,  # retries=3
        "failed": app.enqueue("sleeper", {"seconds": 1}).id,  # retries=0
        "canceled": app.enqueue("flaky", {"fail_times": 0}).id,  # would otherwise retry
        "renewed": app.enqueue("sleeper", {"seconds": 1}).id,
    }
    start = datetime.now(UTC)
    _claim(app, list(jobs.values()), start)
    assert app.cancel(jobs["canceled"]).cancel_requested
    now = start + timedelta(seconds=5)
    assert RunStore(engine).renew_leases("worker-a", [(jobs["renewed"], 1)], now, 30) == 1
    rescuer = Rescuer(UpkeepStore(engine), RunStore(engine), jobs_app.registry)
    assert rescuer.run_once(now) == 3
    views = {name: app.get(job_id) for name, job_id in jobs.items()}
    assert {name: v.state for name, v in views.items()} == {
        "retried": State.RETRYING,
        "failed": State.FAILED,
        "canceled": State.CANCELED,
        "renewed": State.RUNNING,  # its worker is alive
    }
    for name in ("retried", "failed", "canceled"):
        assert [a.outcome for a in views[name].attempts] == ["worker_lost"]
    assert views["retried"].scheduled_at and views["retried"].scheduled_at >= now
    assert rescuer.run_once(now) == 0  # each run rescued once


# -- retention ------------------------------------------------------------------------------


def test_the_cleaner_deletes_only_terminal_jobs_past_their_retention(db_backend: Backend) -> None:
    app = db_backend.app()
    engine = app.client.jobs.engine
    ids = {name: app.enqueue("add", {"a": i}).id for i, name in enumerate(["done", "failed"])}
    waiting = app.enqueue("add", {"a": 9}).id
    start = datetime.now(UTC)
    _claim(app, list(ids.values()), start, lease_s=30)
    ended = [
        Finish(job_id=job_id, attempt=1, state=state, outcome=outcome, worker_id="worker-a",
               started_at=start, finished_at=start)
        for job_id, state, outcome in [
            (ids["done"], State.COMPLETED, AttemptOutcome.COMPLETED),
            (ids["failed"], State.FAILED, AttemptOutcome.ERROR),
        ]
    ]  # fmt: skip
    assert RunStore(engine).finish(ended) == 2
    cleaner = Cleaner(UpkeepStore(engine), completed_s=60, failed_s=3600)
    assert cleaner.run_once(start + timedelta(seconds=30)) == 0  # neither is old enough
    assert cleaner.run_once(start + timedelta(seconds=120)) == 1
    with pytest.raises(JobNotFound):
        app.get(ids["done"])
    assert app.get(ids["failed"]).state is State.FAILED  # kept longer
    assert cleaner.run_once(start + timedelta(hours=2)) == 1
    with pytest.raises(JobNotFound):
        app.get(ids["failed"])
    assert app.get(waiting).state is State.QUEUED  # never touched, however late


# -- stream feeding -------------------------------------------------------------------------


def test_the_feeder_repairs_a_stream_missing_an_id(pg_redis: Backend) -> None:
    app = pg_redis.app()
    ids = [app.enqueue("add", {"a": i}).id for i in range(3)]
    assert pg_redis.redis_url
    client = redis.Redis.from_url(pg_redis.redis_url)
    stream = keys.queue_stream(pg_redis.prefix, "default")
    entries: Any = client.xrange(stream)  # (redis-py's stubs allow an awaitable reply)
    (lost_entry,) = [e for e, fields in entries if fields[b"id"].decode() == ids[1]]
    client.xdel(stream, lost_entry)  # its dispatch is lost
    streams = RedisDispatcher(pg_redis.redis_url, prefix=pg_redis.prefix, consumer="feeder")
    feeder = StreamFeeder(
        UpkeepStore(app.client.jobs.engine), streams, lambda now: ["default"], 50, lease_s=30
    )
    later = datetime.now(UTC) + timedelta(seconds=5)  # every job is old enough to feed
    assert feeder.run_once(later, full=True) == 1
    assert streams.held("default", 100) == set(ids)
    assert feeder.run_once(later, full=True) == 0  # nothing missing any more
    streams.close()


# -- every duty at once ----------------------------------------------------------------------


def test_one_pass_of_every_duty(backend: Backend) -> None:
    app = backend.app()
    engine = app.client.jobs.engine
    due = app.enqueue("add", {"a": 1}, delay="1h").id
    running = app.enqueue("flaky", {"fail_times": 0}).id
    start = datetime.now(UTC)
    _claim(app, [running], start)
    streams = None
    if backend.redis_url:  # an empty stream, as after a Redis restart
        streams = RedisDispatcher(backend.redis_url, prefix=backend.prefix, consumer="r")
        redis.Redis.from_url(backend.redis_url).delete(keys.queue_stream(backend.prefix, "default"))
    reconciler = _reconciler(engine, app.settings, streams=streams)
    assert (reconciler.feeder is not None) == (streams is not None)
    done = reconciler.run_once(start + timedelta(hours=2))
    assert (done.promoted, done.rescued, done.deleted) == (1, 1, 0)
    assert app.get(due).state is State.QUEUED
    assert app.get(running).state is State.RETRYING
    if streams is not None:
        assert done.fed == 0  # promotion pushed the due job already: the stream holds it
        assert streams.held("default", 10) == {due}
        streams.close()


# -- leadership -----------------------------------------------------------------------------


def test_a_second_holder_does_not_lead_while_the_first_holds_the_lease(
    db_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app = db_backend.app()
    store = LeaseStore(app.client.jobs.engine)
    first, second = Leadership(store, "first", 30.0), Leadership(store, "second", 30.0)
    with caplog.at_level(logging.INFO, logger="conveyor.maintenance"):
        assert first.lead()
        assert not second.lead()
        assert first.lead()  # renewed
        assert not second.lead()
    assert caplog.messages == ["taking over maintenance duties"]  # said once, by the first
    first.release()
    assert not first.leading
    assert second.lead()  # at once, not after 30 s
    assert Leadership(None, "alone", 30.0).lead()  # without a lease store: always


# -- the loop -------------------------------------------------------------------------------


def test_the_loop_runs_the_duties_while_leading_and_releases_on_exit(db_backend: Backend) -> None:
    app = db_backend.app()
    engine = make_engine(app.settings.database_url, pool_size=2)
    due = app.enqueue("add", {"a": 1}, delay="0.2s")
    reconciler = _reconciler(engine, app.settings, leases=LeaseStore(engine))
    assert reconciler.feeder is None  # database dispatch: no streams to feed

    def queued() -> bool:
        return app.get(due.id).state is State.QUEUED

    async def run() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(reconciler.loop(stopping))
        await asyncio.to_thread(wait_for, queued, what="promotion")
        assert reconciler.leadership.leading
        stopping.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(run())
    assert not reconciler.leadership.leading
    assert LeaseStore(engine).acquire(LEASE_NAME, "next", 1.0)  # released: free at once
    engine.dispose()


def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A database that cannot be reached: every pass fails, each failure is logged."""
    engine = make_engine("postgresql+psycopg://root@127.0.0.1:9/none", pool_size=1)
    reconciler = _reconciler(engine, Settings(reconcile_seconds=0.2))

    async def run() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(reconciler.loop(stopping))
        await asyncio.to_thread(
            wait_for,
            lambda: sum("maintenance step failed" in m for m in caplog.messages) >= 2,
            what="two failed passes",
        )
        stopping.set()
        await asyncio.wait_for(task, 10)

    with caplog.at_level(logging.WARNING, logger="conveyor.maintenance"):
        asyncio.run(run())
    engine.dispose()


def test_queued_jobs_no_live_worker_serves_are_flagged(
    sqlite_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """/queues says `served: false`, and the leader warns once a minute, naming the queue."""
    from fastapi.testclient import TestClient

    from conveyor.api import create_app
    from conveyor.reconciler.depth import DepthGauge

    app = sqlite_backend.app()
    for _ in range(2):
        app.enqueue("add", {"a": 1}, queue="typo-queue")
    now = app.client.clock.now()
    app.services.workers.register("w1", host="h", pid=1, queues={"default": 1}, concurrency=1,
                                  now=now)  # fmt: skip
    with TestClient(create_app(app)) as api:
        served = {q["name"]: q["served"] for q in api.get("/queues").json()}
    assert served == {"typo-queue": False}
    gauge = DepthGauge(app.services.stats, app.services.workers, heartbeat_s=10)
    with caplog.at_level("WARNING", logger="conveyor.maintenance"):
        gauge.run_once(now)
        gauge.run_once(now)  # the same minute: no second warning
    warnings = [r.getMessage() for r in caplog.records if "no live worker" in r.getMessage()]
    assert warnings == [
        "queue typo-queue has 2 queued jobs and no live worker serves it "
        "(start one with --queues typo-queue)"
    ]
    app.services.workers.register("w2", host="h", pid=2, queues={"typo-queue": 1},
                                  concurrency=1, now=now)  # fmt: skip
    with TestClient(create_app(app)) as api:
        assert api.get("/queues").json()[0]["served"] is True
