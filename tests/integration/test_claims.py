"""Claims: batched, bounded by their counts, and exclusive between concurrent claimers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from conveyor import State
from conveyor.client import EnqueueRequest
from conveyor.store import ClaimStore, UpkeepStore
from conveyor.store.clock import DbClock
from tests.conftest import Backend


def test_claim_next_takes_exactly_the_counts_oldest_first(backend: Backend) -> None:
    app = backend.app()
    low = app.enqueue_many([EnqueueRequest("weighted_low", {"n": i}) for i in range(300)])
    crit = app.enqueue_many([EnqueueRequest("weighted_critical", {"n": i}) for i in range(5)])
    claims = ClaimStore(app.client.jobs.engine)
    got = claims.claim_next({"low": 3, "critical": 10}, "w", datetime.now(UTC), 30)
    by_queue: dict[str, list[str]] = {}
    for job in got:
        by_queue.setdefault(job.queue, []).append(job.id)
    assert sorted(by_queue["low"]) == sorted(h.id for h in low[:3])
    assert sorted(by_queue["critical"]) == sorted(h.id for h in crit)
    assert all(j.attempt == 1 and j.charged == 1 for j in got)
    assert app.get(low[0].id).state is State.RUNNING
    assert app.get(low[3].id).state is State.QUEUED


def test_concurrent_claimers_never_share_a_job(backend: Backend) -> None:
    app = backend.app()
    app.enqueue_many([EnqueueRequest("weighted_low", {"n": i}) for i in range(400)])
    claims = ClaimStore(app.client.jobs.engine)
    claimed: list[list[str]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def claimer(slot: int) -> None:
        barrier.wait()
        while True:
            got = claims.claim_next({"low": 7}, f"w{slot}", datetime.now(UTC), 30)
            if not got:
                return
            assert len(got) <= 7
            claimed[slot] += [j.id for j in got]

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job_id for ids in claimed for job_id in ids]
    assert len(everything) == 400 and len(set(everything)) == 400


def test_claim_ids_skips_stale_deliveries(backend: Backend) -> None:
    app = backend.app()
    fresh = app.enqueue("add", {"a": 1})
    canceled = app.enqueue("add", {"a": 2})
    app.cancel(canceled.id)
    claims = ClaimStore(app.client.jobs.engine)
    now = datetime.now(UTC)
    got = claims.claim_ids([fresh.id, canceled.id, fresh.id], "w", now, 30)
    assert [j.id for j in got] == [fresh.id]
    assert claims.claim_ids([fresh.id], "w2", now, 30) == []  # a duplicate delivery
    assert claims.existing([fresh.id, "00000000-0000-7000-8000-000000000000"]) == {fresh.id}


def test_promote_due_moves_only_due_jobs(backend: Backend) -> None:
    app = backend.app()
    soon = app.enqueue("add", {"a": 1}, delay="1s")
    later = app.enqueue("add", {"a": 2}, delay="1h")
    upkeep = UpkeepStore(app.client.jobs.engine)
    assert upkeep.promote_due(datetime.now(UTC)) == []
    promoted = upkeep.promote_due(datetime.now(UTC) + timedelta(seconds=2))
    assert promoted == [(soon.id, "default")]
    assert app.get(soon.id).state is State.QUEUED
    assert app.get(later.id).state is State.SCHEDULED


def test_a_backlog_is_claimed_after_a_cursor_that_expires_or_runs_short(
    db_backend: Backend,
) -> None:
    """Database dispatch: while claims come back full, the next continues after the last id
    claimed; a claim that runs short, or a cursor older than CURSOR_S, rescans from the start
    (a job queued again with an older id is never left behind)."""
    from sqlalchemy import update

    from conveyor.core.shares import Shares
    from conveyor.delivery.database import CURSOR_S, DatabaseSource
    from conveyor.store.tables import jobs

    app = db_backend.app()
    handles = app.enqueue_many([EnqueueRequest("weighted_low", {"n": i}) for i in range(10)])
    ids = [h.id for h in handles]
    engine = app.client.jobs.engine
    now = [0.0]
    source = DatabaseSource(
        ClaimStore(engine), "w", 30, now=DbClock(engine).now, clock=lambda: now[0]
    )
    shares = Shares({"low": 1})

    def requeue(job_id: str) -> None:
        with engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(state="queued"))

    assert [j.id for j in source.claim(shares, 3, 0)] == ids[:3]
    requeue(ids[0])
    assert [j.id for j in source.claim(shares, 3, 0)] == ids[3:6]  # after the cursor
    now[0] += CURSOR_S + 0.1  # the cursor expired: from the start again
    assert [j.id for j in source.claim(shares, 2, 0)] == [ids[0], ids[6]]
    requeue(ids[1])
    # Full again (cursor after ids[6]): 7, 8, 9 come back short of 5, so the rest is claimed
    # from the start at once.
    assert sorted(j.id for j in source.claim(shares, 5, 0)) == sorted([ids[1], *ids[7:]])
    assert source.claim(shares, 5, 0) == []


def test_claim_next_after_a_cursor_skips_older_jobs(db_backend: Backend) -> None:
    app = db_backend.app()
    ids = [
        h.id for h in app.enqueue_many([EnqueueRequest("weighted_low", {"n": i}) for i in range(6)])
    ]
    claims = ClaimStore(app.client.jobs.engine)
    got = claims.claim_next({"low": 10}, "w", datetime.now(UTC), 30, after={"low": ids[2]})
    assert sorted(j.id for j in got) == ids[3:]


def test_a_queue_found_empty_rests_and_its_slots_go_to_the_busy_one(
    db_backend: Backend,
) -> None:
    """A worker serving a busy queue and an empty one (the built-in ``conveyor.webhooks``,
    say) does not spend a claim statement on the empty one every round: after a claim finds
    it empty it rests for EMPTY_REST_S, its slots going to the busy queue in the same
    statement."""
    import time

    from conveyor.core.shares import Shares
    from conveyor.delivery.database import EMPTY_REST_S

    app = db_backend.app()
    for i in range(30):
        app.enqueue("add", {"a": i}, queue="busy")
    source = app.services.source("w-rest", ["busy", "idle"], 30.0)
    claims: list[dict[str, int]] = []
    real = source.claims.claim_next

    def counting(counts, *args, **kwargs):  # type: ignore[no-untyped-def]
        claims.append(dict(counts))
        return real(counts, *args, **kwargs)

    source.claims.claim_next = counting  # the real store, its calls recorded
    now = [time.monotonic()]
    source.clock = lambda: now[0]  # type: ignore[attr-defined]  # a loaded machine's claims are slow
    shares = Shares({"busy": 1, "idle": 1})
    first = source.claim(shares, 4, 0.0)
    assert len(first) == 4 and claims[0] == {"busy": 2, "idle": 2}  # idle found empty
    claims.clear()
    second = source.claim(shares, 4, 0.0)
    assert len(second) == 4 and claims == [{"busy": 4}]  # one statement, idle resting
    now[0] += EMPTY_REST_S * 1.5
    claims.clear()
    source.claim(shares, 4, 0.0)
    assert claims[0].get("idle") == 2  # rested long enough: asked again
    source.release()
