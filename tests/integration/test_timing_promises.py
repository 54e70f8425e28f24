"""The timing promises of docs/guarantees.md, measured against their documented bounds.

Each bound is asserted with a stated tolerance for a loaded 2-core machine (``SLACK_S``), and
each measurement is printed. Times are read on the database's clock, which every process
stamps its writes with, so the numbers do not depend on how often the test polls.

Settings are the suite's fast ones (tests/conftest.py FAST): LEASE_SECONDS 3, HEARTBEAT_SECONDS
0.5, RECONCILE_SECONDS 0.5, unless a test says otherwise.
"""

from __future__ import annotations

import random
import signal
import statistics
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select

from conveyor import Conveyor, State, faults
from conveyor.client import EnqueueRequest
from conveyor.core.states import ACTIVE
from conveyor.dispatch import keys
from conveyor.dispatch.redis import RedisDispatcher
from conveyor.reconciler import LEASE_NAME, Reconciler, build_reconciler
from conveyor.store import ClaimStore, RunStore, UpkeepStore, WorkerStore, make_engine
from conveyor.store.clock import DbClock, db_now
from conveyor.store.tables import attempts, jobs, leases
from tests.apps.jobs import app as jobs_app
from tests.conftest import FAST, Backend, wait_for
from tests.faults.conftest import Ledger

#: What a loaded 2-core machine may add to a documented bound: a scheduling delay of the
#: process doing the duty, and a pass of statements that take longer than usual.
SLACK_S = 0.5
LEASE_S = float(FAST["CONVEYOR_LEASE_SECONDS"])
RECONCILE_S = float(FAST["CONVEYOR_RECONCILE_SECONDS"])
HEARTBEAT_S = float(FAST["CONVEYOR_HEARTBEAT_SECONDS"])


def _now(app: Conveyor) -> datetime:
    """The database's time (SQLite's is this host's)."""
    with app.client.jobs.engine.connect() as conn:
        return db_now(conn)


def _s(delta: timedelta) -> float:
    return delta.total_seconds()


def _report(what: str, measured: list[float], documented: float, asserted: float) -> None:
    print(
        f"\n{what}: max {max(measured):.3f} s, min {min(measured):.3f} s over {len(measured)}"
        f" (documented {documented:g} s, asserted <= {asserted:g} s)"
    )


# -- "A due scheduled or retrying job is queued within 0.25 s (plus claim latency)" ------------

PROMOTION_S = 0.25  # as documented (not read from the code: a slower loop must fail here)


def _spread(n: int) -> list[str]:
    """Delays over 1.5 s, scattered at random: a job falls due anywhere in a pass."""
    rng = random.Random(14)
    return [f"{rng.uniform(0.5, 2.0):.3f}s" for _ in range(n)]


def _check_promotion(what: str, lags: list[float], median_s: float) -> None:
    """Every lag within the bound (+ SLACK_S); the median within ``median_s``, which passes
    0.25 s apart meet (a job falls due anywhere in a pass: half of it on average) and passes
    0.5 s apart would not."""
    assert min(lags) >= 0, lags
    _report(what, lags, PROMOTION_S, PROMOTION_S + SLACK_S)
    print(f"  median {statistics.median(lags):.3f} s (asserted <= {median_s:g} s)")
    assert max(lags) <= PROMOTION_S + SLACK_S, lags
    assert statistics.median(lags) <= median_s, lags


def test_a_due_job_is_queued_within_a_quarter_second(db_backend: Backend) -> None:
    """Promotion alone: a `conveyor scheduler` does the duties and no worker claims, so each
    row's ``updated_at`` is the time its promotion read the clock."""
    app = db_backend.app()
    scheduler = db_backend.worker(command="scheduler")
    wait_for(lambda: _holder(app) is not None, what="the scheduler to lead")
    handles = [app.enqueue("add", {"a": i}, delay=d) for i, d in enumerate(_spread(40))]
    wait_for(
        lambda: all(app.get(h.id).state is State.QUEUED for h in handles),
        timeout=20,
        what=f"promotion\n{scheduler.log()}",
    )
    views = [app.get(h.id) for h in handles]
    lags = [_s(v.updated_at - v.scheduled_at) for v in views if v.scheduled_at]
    assert len(lags) == len(views)
    _check_promotion(f"promotion ({db_backend.name})", lags, median_s=0.8 * PROMOTION_S)


def test_a_due_job_starts_within_a_quarter_second_plus_claim_latency(backend: Backend) -> None:
    """Promotion and claim: scheduled jobs and retries (``flaky`` backs off 0.2 s) run by a
    worker; its ``started_at`` minus the due time is both, on the database's clock."""
    app = backend.app()
    backend.worker("--concurrency", "20")
    wait_for(lambda: _holder(app) is not None, what="a worker to lead")
    scheduled = [app.enqueue("add", {"a": i}, delay=d) for i, d in enumerate(_spread(12))]
    retried = [app.enqueue("flaky", {"fail_times": 1}) for _ in range(6)]
    lags: list[float] = []
    for handle in scheduled:
        view = app.wait(handle.id, timeout=20)
        assert view.started_at and view.scheduled_at
        lags.append(_s(view.started_at - view.scheduled_at))
    for handle in retried:
        view = app.wait(handle.id, timeout=20)
        first, second = view.attempts
        assert (first.outcome, second.outcome) == ("error", "completed")
        assert view.scheduled_at and second.started_at  # the retry's due time, and its start
        lags.append(_s(second.started_at - view.scheduled_at))
    # claims add up to a poll (POLL_SECONDS 0.05) on database dispatch, a round trip on Redis
    # The median: a pass's 0.25 s plus a claim, which a loaded machine (two suites sharing
    # 2 cores) stretched to a 0.31 s median on SQLite. The spacing of passes alone is what
    # the promotion test above bounds at 0.2 s.
    _check_promotion(
        f"promotion + claim ({backend.name})", lags, median_s=PROMOTION_S + SLACK_S / 4
    )


# -- "A running job whose worker died is recovered within lease + reconcile interval" ---------


def test_a_dead_workers_job_is_recovered_within_lease_plus_reconcile(db_backend: Backend) -> None:
    b = db_backend
    app = b.app()
    ledger = Ledger(b.marks)
    doomed = b.worker("--queues", "default")
    handle = app.enqueue("ledger", {"seconds": 60})
    wait_for(lambda: ledger.starts()[(handle.id, 1)] == 1, what="the job to run")
    b.worker("--queues", "low")  # the survivor does the duties; it cannot run the job again
    wait_for(lambda: len(_alive_workers(app)) == 2, what="the second worker")
    doomed.signal(signal.SIGKILL)
    killed_at = _now(app)
    with app.client.jobs.engine.connect() as conn:  # the lease it renewed last
        lease_end = conn.execute(
            select(jobs.c.lease_expires_at).where(jobs.c.id == handle.id)
        ).scalar_one()
    view = _wait_lost(app, handle.id)
    (lost,) = view.attempts
    assert lost.outcome == "worker_lost" and lost.finished_at
    recovery_s = _s(lost.finished_at - killed_at)
    bound = LEASE_S + RECONCILE_S
    _report(f"recovery ({b.name})", [recovery_s], bound, bound + SLACK_S)
    assert lost.finished_at > _aware(lease_end)  # not before its lease ran out ...
    assert recovery_s <= bound + SLACK_S  # ... and within the documented bound


def _wait_lost(app: Conveyor, job_id: str) -> Any:
    def lost() -> Any:
        view = app.get(job_id)
        return view if view.attempts else None

    return wait_for(lost, timeout=4 * LEASE_S, what="recovery")


def _alive_workers(app: Conveyor) -> list[str]:
    since = _now(app) - timedelta(seconds=3 * HEARTBEAT_S)
    return [w["id"] for w in WorkerStore(app.client.jobs.engine).alive(since)]


# -- "when its holder dies another takes over within max(2 s, 3 x RECONCILE_SECONDS)" ---------


def _aware(value: datetime) -> datetime:
    """A time read back from the database, in UTC (SQLite returns it naive)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _lease(app: Conveyor) -> tuple[str, datetime] | None:
    """The maintenance lease: its holder and when it expires."""
    query = select(leases.c.holder, leases.c.expires_at).where(leases.c.name == LEASE_NAME)
    with app.client.jobs.engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else (str(row.holder), _aware(row.expires_at))


def _holder(app: Conveyor) -> str | None:
    lease = _lease(app)
    return None if lease is None else lease[0]


def _other_than(app: Conveyor, old: str) -> Callable[[], tuple[str, datetime] | None]:
    """A condition: the lease, once someone other than ``old`` holds it."""

    def taken() -> tuple[str, datetime] | None:
        lease = _lease(app)
        return lease if lease is not None and lease[0] != old else None

    return taken


def test_a_dead_leader_is_replaced_within_the_documented_bound(db_backend: Backend) -> None:
    """RECONCILE_SECONDS 1: the lease is 3 x 1 s; a follower tries every min(1 s, it)."""
    b = db_backend
    reconcile_s = 1.0
    ttl = timedelta(seconds=max(2.0, 3 * reconcile_s))  # as the leader lease is taken
    b.extra_env["CONVEYOR_RECONCILE_SECONDS"] = str(reconcile_s)
    app = b.app()
    workers = [b.worker(), b.worker()]
    wait_for(lambda: len(_alive_workers(app)) == 2, what="two workers")
    leader = wait_for(lambda: _holder(app), what="a leader")
    (victim,) = [w for w in workers if f":{w.proc.pid}:" in leader]
    victim.signal(signal.SIGKILL)
    killed_at = _now(app)
    last = _lease(app)  # what the dead leader renewed last
    assert last is not None and last[0] == leader
    # Polled often enough to see the successor's first write, before it renews (each pass):
    # its expiry minus the lease's length is when it took over, on the database's clock.
    successor, expires = wait_for(_other_than(app, leader), interval=0.01, timeout=30)
    took_over_at = expires - ttl
    took_over_s = _s(took_over_at - killed_at)
    (survivor,) = [w for w in workers if w is not victim]
    assert f":{survivor.proc.pid}:" in successor
    documented = _s(ttl)
    shown = documented + min(1.0, reconcile_s)  # the follower's retry interval comes on top
    _report(f"leader takeover ({b.name})", [took_over_s], documented, shown + SLACK_S)
    assert took_over_at >= last[1]  # not while the dead leader's lease still held ...
    assert took_over_s <= shown + SLACK_S  # ... and at the follower's next try once it lapsed


# -- "Ids a dead worker fetched from Redis but never claimed are handed out again after a
#    lease (XAUTOCLAIM)" ------------------------------------------------------------------------


def test_ids_a_dead_worker_fetched_are_handed_out_again_after_a_lease(pg_redis: Backend) -> None:
    b = pg_redis
    # Long enough for the second worker to start and prove itself live first, also on a
    # loaded machine (a worker took over 5 s to start while two test runs shared 2 cores).
    lease_s = 8.0
    b.extra_env["CONVEYOR_LEASE_SECONDS"] = str(lease_s)
    app = b.app()
    ledger = Ledger(b.marks)
    handle = app.enqueue("ledger", {})
    dead = b.worker(**{faults.ENV: "after_fetch"})  # fetches it, dies before claiming
    assert dead.wait(30) == faults.EXIT_STATUS, dead.log()
    client = redis.Redis.from_url(b.redis_url or "")
    stream = keys.queue_stream(b.prefix, "default")
    (pending,) = client.xpending_range(stream, keys.GROUP, min="-", max="+", count=10)
    delivered_at = _now(app) - timedelta(milliseconds=pending["time_since_delivered"])
    assert app.get(handle.id).state is State.QUEUED  # fetched, never claimed

    b.worker()
    probe = app.enqueue("add", {"a": 1})  # the live worker fetches what is new at once ...
    assert probe.wait(timeout=lease_s).state is State.COMPLETED
    probe_at = app.get(probe.id).finished_at
    assert probe_at and _s(probe_at - delivered_at) < lease_s  # ... before the lease is up
    view = app.wait(handle.id, timeout=3 * lease_s)
    assert view.state is State.COMPLETED and view.started_at
    handed_out_s = _s(view.started_at - delivered_at)
    bound = lease_s + RECONCILE_S  # idle for a lease, then the next full maintenance pass
    _report("XAUTOCLAIM hand-out", [handed_out_s], lease_s, bound + SLACK_S)
    assert handed_out_s >= lease_s  # not while the dead worker's delivery is fresh
    assert handed_out_s <= bound + SLACK_S
    assert [a.outcome for a in view.attempts] == ["completed"]  # the dead one never claimed it
    assert ledger.starts() == Counter({(handle.id, 1): 1})


# -- "Each duty is a small fenced transaction, so even two at once would be safe" -------------


def _active(app: Conveyor) -> int:
    """How many jobs are not finished."""
    query = select(func.count()).where(jobs.c.state.in_([s.value for s in ACTIVE]))
    with app.client.jobs.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


async def _io(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _reconciler(app: Conveyor, name: str) -> tuple[Reconciler, Callable[[], None]]:
    """A reconciler of its own (engine, Redis connection) that never asks for the leader
    lease, and what closes its connections."""
    settings = app.settings
    engine = make_engine(settings.database_url, pool_size=2)
    streams = None
    if settings.redis_url:
        streams = RedisDispatcher(
            settings.redis_url,
            prefix=settings.redis_prefix,
            consumer=name,
            window=settings.dispatch_window,
        )
    made = build_reconciler(
        upkeep=UpkeepStore(engine),
        runs=RunStore(engine),
        workers=WorkerStore(engine),
        leases=None,
        handoff=streams,
        streams=streams,
        clock=DbClock(engine),
        io=_io,
        registry=jobs_app.registry,
        settings=settings,
        holder=name,
        queues=["default"],
    )
    assert made.leadership.lead()  # no lease store: it always leads

    def close() -> None:
        if streams is not None:
            streams.close()
        engine.dispose()

    return made, close


def test_two_reconcilers_at_once_promote_recover_and_feed_each_job_once(backend: Backend) -> None:
    b = backend
    app = b.app()
    ledger = Ledger(b.marks)
    n = 200
    start = _now(app)
    due = [app.enqueue("ledger", {}, delay="0.5s").id for _ in range(n)]
    running = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {})] * n)]
    claimed = ClaimStore(app.client.jobs.engine).claim_ids(
        running, "dead-worker", start - timedelta(seconds=10), 1
    )  # a worker that died 10 s ago holding them
    assert len(claimed) == n
    lost = [h.id for h in app.enqueue_many([EnqueueRequest("ledger", {})] * n)]
    if b.redis_url:  # their dispatch is lost (as if Redis restarted empty)
        client = redis.Redis.from_url(b.redis_url)
        client.delete(keys.queue_stream(b.prefix, "default"))
    # The delayed jobs are due and the lost ones stale (queued for over FEED_GRACE_S) — timed
    # from the last enqueue, which a loaded machine may make well after ``start``.
    now = _now(app) + timedelta(seconds=1.5)
    made = [_reconciler(app, "reconciler-1"), _reconciler(app, "reconciler-2")]
    pair = [m for m, _ in made]
    gate = threading.Barrier(2)
    done: dict[str, Counter[str]] = {"reconciler-1": Counter(), "reconciler-2": Counter()}
    errors: list[BaseException] = []

    def duties(m: Reconciler, tally: Counter[str]) -> None:
        try:
            for _ in range(3):
                gate.wait(10)
                tally["promoted"] += m.promoter.run_once(now)
                gate.wait(10)
                tally["recovered"] += m.rescuer.run_once(now)
                gate.wait(10)
                tally["fed"] += m.feeder.run_once(now, full=True) if m.feeder else 0
        except BaseException as exc:
            errors.append(exc)
            gate.abort()

    threads = [
        threading.Thread(target=duties, args=(m, t))
        for m, t in zip(pair, done.values(), strict=True)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for _, close in made:
            close()
    assert errors == []
    total = sum(done.values(), Counter())
    print(f"\ntwo reconcilers at once ({b.name}): {dict(done)}")
    assert total["promoted"] == n  # each due job promoted once, by one of them
    assert total["recovered"] == n  # each dead run recovered once
    if b.redis_url:
        assert n <= total["fed"] <= 2 * n  # a lost id pushed by one or both: claims decide
    with app.client.jobs.engine.connect() as conn:
        rows = conn.execute(
            select(attempts.c.job_id, attempts.c.attempt, attempts.c.outcome).where(
                attempts.c.job_id.in_(running)
            )
        ).all()
    assert sorted((str(j), a, o) for j, a, o in rows) == sorted(
        (i, 1, "worker_lost") for i in running
    )  # one attempt row each, written once

    b.worker("--concurrency", "30")
    everything = due + running + lost
    wait_for(lambda: _active(app) == 0, timeout=40, what="every job to finish")
    views = {i: app.get(i) for i in everything}
    assert {v.state for v in views.values()} == {State.COMPLETED}
    ledger.assert_once_per_attempt()  # no attempt of any job ran twice
    assert ledger.jobs_ended() == Counter(everything)  # and each job ran to its end once
    assert all(
        [a.outcome for a in views[i].attempts] == ["worker_lost", "completed"] for i in running
    )
    assert all([a.outcome for a in views[i].attempts] == ["completed"] for i in due + lost)
