"""The history of the last minutes (``conveyor_minutes``, ``StatsStore.history``,
``GET /stats/history``): a real worker's outcomes land in their minute and queue beside its
counters; the reconciler records depths once a minute and deletes rows a day old; reading
touches only the per-minute table."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, select

from conveyor import Conveyor, State
from conveyor.core.metrics import minute_of, new_deltas, observe
from conveyor.reconciler import DepthGauge, MinuteCleaner, Reconciler, build_reconciler
from conveyor.store import ClaimStore, Engine, RunStore, UpkeepStore, WorkerStore
from conveyor.store.clock import DbClock
from conveyor.store.stats import StatsStore
from conveyor.store.tables import minutes
from tests.api.conftest import api_for
from tests.apps.jobs import app as jobs_app
from tests.conftest import Backend, wait_for, wait_serving

T0 = datetime(2026, 1, 5, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_minutes(db_backend: Backend) -> Iterator[None]:
    """The session's PostgreSQL database keeps the rows of earlier tests' workers."""
    app = db_backend.app()
    with app.client.jobs.engine.begin() as conn:
        conn.execute(delete(minutes))
    yield


def _stats(app: Conveyor) -> StatsStore:
    return app.services.stats


def _reconciler(engine: Engine, app: Conveyor) -> Reconciler:
    return build_reconciler(
        upkeep=UpkeepStore(engine),
        runs=RunStore(engine),
        workers=WorkerStore(engine),
        leases=None,
        handoff=None,
        streams=None,
        clock=DbClock(engine, sync_s=None),
        io=asyncio.to_thread,
        registry=jobs_app.registry,
        settings=app.settings,
        holder="test",
        queues=["default"],
    )


def _done(app: Conveyor, ids: list[str]) -> bool:
    return all(app.get(i).state in (State.COMPLETED, State.FAILED) for i in ids)


# -- written by a real worker ----------------------------------------------------------------


def test_a_workers_outcomes_land_in_their_minute_and_queue(db_backend: Backend) -> None:
    app = db_backend.app()
    db_backend.worker("--queues", "default,low")
    wait_serving(app)
    ids = {
        "slept": [app.enqueue("sleeper", {"seconds": 0.2}).id for _ in range(4)],
        "low": [app.enqueue("sync_add", {"a": i}).id for i in range(3)],
        "failed": [app.enqueue("permanent", {}).id for _ in range(2)],
        "retried": [app.enqueue("flaky", {"fail_times": 1}).id],
    }
    everything = [i for group in ids.values() for i in group]
    wait_for(lambda: _done(app, everything), timeout=30, what="every job to end")
    stats = _stats(app)

    def history() -> Any:
        return stats.history(app.client.clock.now(), minutes=5)

    def counted() -> Any:  # the worker's metrics flush runs every second
        found = history()
        return found if sum(m.completed for m in found.total.minutes) == 8 else None

    found = wait_for(counted, timeout=15, what="the history to count the completed jobs")
    by_queue = {q: found.queues[q].minutes for q in ("default", "low")}
    assert sorted(found.queues) == ["default", "low"] and not found.truncated
    assert sum(m.completed for m in by_queue["default"]) == 5  # 4 sleepers + the flaky one
    assert sum(m.completed for m in by_queue["low"]) == 3
    assert sum(m.failed for m in by_queue["default"]) == 2
    assert sum(m.failed for m in by_queue["low"]) == 0
    assert sum(m.retried for m in found.total.minutes) == 1
    # Each count is in a minute some job ended in (or the next, for a flush a second later).
    ended = [app.get(i).finished_at for i in everything]
    minutes_ended = {minute_of(t + timedelta(seconds=s)) for t in ended if t for s in (0, 2)}
    busy = {m.at for m in found.total.minutes if m.completed or m.failed or m.retried}
    assert busy and busy <= minutes_ended
    assert [m.at for m in found.total.minutes] == [
        found.since + timedelta(minutes=i) for i in range(5)
    ]
    # Plausible means: the sleepers ran 0.2 s, the others about nothing.
    run = [m.mean_run_seconds for m in by_queue["default"] if m.mean_run_seconds is not None]
    wait = [m.mean_wait_seconds for m in by_queue["default"] if m.mean_wait_seconds is not None]
    assert run and all(0.05 <= s <= 2.0 for s in run)
    assert wait and all(0.0 <= s <= 20.0 for s in wait)
    last = [m for m in found.total.minutes if m.completed][-1]
    assert last.wait_p50_seconds is not None and last.wait_p99_seconds is not None
    assert 0.0 <= last.wait_p50_seconds <= last.wait_p95_seconds <= last.wait_p99_seconds  # type: ignore[operator]
    recent = found.queues["default"].recent
    assert recent.completed_per_minute > 0 and recent.failed_per_minute > 0
    assert recent.mean_run_seconds is not None and 0.05 <= recent.mean_run_seconds <= 2.0
    # The worker's own reconciler (it leads: no other) sampled the depths.
    sampled = wait_for(
        lambda: [m for m in history().total.minutes if m.queued is not None],
        what="the worker's reconciler to record the depths",
    )
    assert all(m.queued is not None and m.running is not None for m in sampled)
    only_low = stats.history(app.client.clock.now(), minutes=5, queue="low")
    assert list(only_low.queues) == ["low"]
    assert sum(m.completed for m in only_low.total.minutes) == 3


# -- depth gauges ----------------------------------------------------------------------------


def test_a_reconciler_pass_records_depths_once_a_minute(db_backend: Backend) -> None:
    app = db_backend.app()
    engine = app.client.jobs.engine
    for i in range(5):
        app.enqueue("sync_add", {"a": i})  # queue "low", no worker: they stay queued
    running = [app.enqueue("add", {"a": i}).id for i in range(2)]
    now = app.client.clock.now()
    assert len(ClaimStore(engine).claim_ids(running, "w", now, 30)) == 2
    reconciler = _reconciler(engine, app)
    assert reconciler.run_once(now).gauged == 2
    assert reconciler.run_once(now + timedelta(seconds=1)).gauged in (0, 2)  # a new minute?
    at = minute_of(now)
    found = _stats(app).history(now, minutes=3)
    point = {q: s.minutes[-1] for q, s in found.queues.items()}
    assert (point["low"].queued, point["low"].running) == (5, 0)
    assert (point["default"].queued, point["default"].running) == (0, 2)
    assert (found.total.minutes[-1].queued, found.total.minutes[-1].running) == (5, 2)
    assert found.total.minutes[-1].at == at
    assert found.total.minutes[0].queued is None  # no sample then: unknown, not 0
    # A new leader records the same minute again: the gauge is set, not added up.
    assert DepthGauge(_stats(app)).run_once(now) == 2
    again = _stats(app).history(now, minutes=1, queue="low")
    assert again.total.minutes[-1].queued == 5


# -- retention -------------------------------------------------------------------------------


def _old_rows(stats: StatsStore, at: list[datetime]) -> None:
    for t in at:
        deltas = new_deltas()
        deltas[("jobs_completed_total", "add", "default", "")] += 1
        observe(deltas, "job_wait_seconds", "add", "default", 0.1)
        stats.add(deltas, t)


def _minutes_stored(engine: Engine) -> list[datetime]:
    with engine.connect() as conn:
        return sorted(set(conn.execute(select(minutes.c.minute)).scalars()))


def test_rows_older_than_a_day_are_deleted_a_few_minutes_a_pass(db_backend: Backend) -> None:
    app = db_backend.app()
    engine, stats = app.client.jobs.engine, _stats(app)
    old = [T0 - timedelta(hours=24, minutes=i) for i in range(1, 26)]  # 25 minutes too old
    kept = [T0 - timedelta(hours=23, minutes=59), T0]
    _old_rows(stats, old + kept)
    cleaner = MinuteCleaner(stats, per_pass=10)
    deleted = [cleaner.run_once(T0) for _ in range(4)]
    assert deleted[0] > 0 and deleted[1] > 0 and deleted[2] > 0 and deleted[3] == 0
    assert _minutes_stored(engine) == sorted(minute_of(t) for t in kept)
    # The reconciler's full pass runs it.
    _old_rows(stats, old)
    assert _reconciler(engine, app).run_once(T0).minutes_deleted > 0


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement ``engine`` sends while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_flush_is_counted_in_its_minute_beside_the_counters(db_backend: Backend) -> None:
    app = db_backend.app()
    stats = _stats(app)
    with _statements(app.client.jobs.engine) as sent:
        _old_rows(stats, [T0])
    assert len([s for s in sent if "conveyor_minutes" in s]) == 1  # one more per flush
    _old_rows(stats, [T0 + timedelta(seconds=20), T0 + timedelta(minutes=2)])
    found = stats.history(T0 + timedelta(minutes=2), minutes=3)
    assert [m.completed for m in found.total.minutes] == [2, 0, 1]
    assert found.total.minutes[0].mean_wait_seconds == pytest.approx(0.1)
    assert found.total.minutes[0].wait_p50_seconds == pytest.approx(0.075)  # in (0.05, 0.1]
    assert {r["metric"] for r in stats.counters().rows} >= {"jobs_completed_total"}


def test_reading_touches_only_the_minutes_table(db_backend: Backend) -> None:
    app = db_backend.app()
    with _statements(app.client.jobs.engine) as sent:
        _stats(app).history(app.client.clock.now(), minutes=60)
    reads = [s for s in sent if "conveyor_minutes" in s]
    assert len(reads) == 2
    assert not any("conveyor_jobs" in s for s in sent)


# -- HTTP ------------------------------------------------------------------------------------


def test_the_endpoint_returns_the_history_and_refuses_bad_input(db_backend: Backend) -> None:
    app = db_backend.app()
    now = app.client.clock.now()
    deltas = new_deltas()
    deltas[("jobs_completed_total", "add", "default", "")] += 3
    deltas[("jobs_failed_total", "add", "default", "")] += 1
    observe(deltas, "job_wait_seconds", "add", "default", 0.2)
    _stats(app).add(deltas, now)
    with api_for(app) as api:
        body = api.get("/stats/history", params={"minutes": 5}).json()
        assert body["minutes"] == 5 and len(body["total"]["minutes"]) == 5
        last = body["total"]["minutes"][-1]
        assert (last["completed"], last["failed"]) == (3, 1)
        assert last["mean_wait_seconds"] == pytest.approx(0.2)
        assert set(last) >= {"at", "wait_p95_seconds", "queued", "running", "mean_run_seconds"}
        assert list(body["queues"]) == ["default"] and body["truncated"] is False
        assert body["queues"]["default"]["recent"]["failed_per_minute"] > 0
        default = api.get("/stats/history").json()
        assert len(default["total"]["minutes"]) == 60
        other = api.get("/stats/history", params={"queue": "low", "minutes": 2}).json()
        assert list(other["queues"]) == ["low"]
        assert sum(m["completed"] for m in other["total"]["minutes"]) == 0
        for params in ({"minutes": 0}, {"minutes": 1441}, {"minutes": "x"}, {"queue": "no way"}):
            response = api.get("/stats/history", params=params)
            assert response.status_code == 422, params
        refused = api.get("/stats/history", params={"queue": "no way"}).json()
        assert refused["error"]["code"] == "invalid_queue_name"
