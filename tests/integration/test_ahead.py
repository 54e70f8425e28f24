"""Jobs claimed ahead of free slots (``worker.ahead``): handed back unstarted when the slots
stay busy, so they never wait behind a long job while another worker could run them; handed
back fenced, with no attempt charged or recorded; and recorded like any other when they run."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from conveyor import State
from conveyor.client import EnqueueRequest
from conveyor.core.shares import Shares
from conveyor.store.tables import attempts, jobs
from tests.conftest import Backend, wait_for


def _states(app, ids: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    query = select(jobs.c.state, func.count()).where(jobs.c.id.in_(ids)).group_by(jobs.c.state)
    with app.client.jobs.engine.connect() as conn:
        return {state: int(n) for state, n in conn.execute(query)}


def test_jobs_claimed_ahead_never_wait_behind_a_long_job_while_a_worker_is_free(
    backend: Backend,
) -> None:
    """Two workers with one slot each; a stream of quick jobs with one long job in the
    middle. Whichever worker runs the long job holds the quick jobs it claimed after it: they
    go back within the hold time and the other worker runs them while the long job runs."""
    app = backend.app()
    first = backend.worker("--concurrency", "1")
    second = backend.worker("--concurrency", "1")
    warm = app.enqueue("sleeper", {"seconds": 0})
    wait_for(lambda: app.get(warm.id).state is State.COMPLETED, timeout=30, what="a warm-up")
    quick = [EnqueueRequest("sleeper", {"seconds": 0})] * 300  # retries=0: one attempt each
    handles = app.enqueue_many([*quick, EnqueueRequest("sleeper", {"seconds": 20}), *quick])
    long_id = handles[300].id
    quick_ids = [h.id for i, h in enumerate(handles) if i != 300]
    wait_for(lambda: app.get(long_id).state is State.RUNNING, timeout=30, what="the long job")
    wait_for(
        lambda: _states(app, quick_ids).get(State.COMPLETED.value) == len(quick_ids),
        timeout=8,
        what="every quick job done while the long one runs",
    )
    assert app.get(long_id).state is State.RUNNING
    with app.client.jobs.engine.connect() as conn:
        recorded = conn.execute(
            select(attempts.c.job_id, attempts.c.outcome).where(attempts.c.job_id.in_(quick_ids))
        ).all()
        charged = conn.execute(
            select(func.max(jobs.c.attempt - jobs.c.uncharged)).where(jobs.c.id.in_(quick_ids))
        ).scalar_one()
    # Each ran once: a job handed back unstarted runs as its next attempt number, which has a
    # row of its own (the job row records only a first attempt); the one it never started has
    # none. A hand-back charged nothing (retries=0 would have failed them).
    assert {outcome for _, outcome in recorded} <= {"completed"}
    assert len({job_id for job_id, _ in recorded}) == len(recorded)
    assert charged == 1
    first.stop()
    second.stop()


def test_a_hand_back_queues_the_job_again_fenced_and_uncharged(db_backend: Backend) -> None:
    """The store's side: only the claiming worker's attempt is handed back; the job is
    queued again, its attempt count kept (fencing needs it never to go back), one attempt
    uncharged, no attempt row written; and it can be claimed again at once."""
    app = db_backend.app()
    ids = [h.id for h in app.enqueue_many([EnqueueRequest("sleeper", {"seconds": 0})] * 3)]
    services = app.services
    source = services.source("w-ahead", ["default"], 30.0)
    claimed = source.claim(Shares({"default": 1}), 3, 0.0)
    assert sorted(j.id for j in claimed) == sorted(ids)
    runs = services.runs
    now = services.clock.now()
    held = [(j.id, j.attempt) for j in claimed]
    assert runs.release("w-other", held, now) == []  # not its claim
    assert runs.release("w-ahead", [(ids[0], 7)], now) == []  # not this attempt
    released = runs.release("w-ahead", held[:2], now)
    assert sorted(job_id for _, job_id in released) == sorted(j for j, _ in held[:2])
    assert {queue for queue, _ in released} == {"default"}
    for job_id, attempt in held[:2]:
        job = app.get(job_id)
        assert job.state is State.QUEUED and job.attempts == []
        with app.client.jobs.engine.connect() as conn:
            row = conn.execute(
                select(jobs.c.attempt, jobs.c.uncharged, jobs.c.worker_id).where(
                    jobs.c.id == job_id
                )
            ).one()
        assert (row.attempt, row.uncharged, row.worker_id) == (attempt, 1, None)
    assert app.get(held[2][0]).state is State.RUNNING  # the one not handed back
    again = source.claim(Shares({"default": 1}), 3, 0.0)
    assert sorted(j.id for j in again) == sorted(j for j, _ in held[:2])
    assert all(j.attempt == 2 and j.charged == 1 for j in again)
    source.release()


def test_a_job_claimed_ahead_records_when_it_started_not_when_it_was_claimed(
    backend: Backend,
) -> None:
    """One slot, quick jobs claimed many at a time: each job's start is its own (the next
    starts after the previous ended), not its claim's moment shared by the batch."""
    app = backend.app()
    handles = app.enqueue_many([EnqueueRequest("sleeper", {"seconds": 0.002})] * 200)
    worker = backend.worker("--concurrency", "1")
    ids = [h.id for h in handles]
    wait_for(
        lambda: _states(app, ids).get(State.COMPLETED.value) == len(ids),
        timeout=60,
        what="200 jobs",
    )
    worker.stop()
    with app.client.jobs.engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.started_at, jobs.c.finished_at)
            .where(jobs.c.id.in_(ids))
            .order_by(jobs.c.started_at)
        ).all()
    starts = [r.started_at for r in rows]
    assert len(set(starts)) == len(starts)  # no two share a start
    overlaps = sum(
        1
        for before, after in zip(rows, rows[1:], strict=False)
        if after.started_at < before.finished_at - timedelta(milliseconds=1)
    )
    assert overlaps == 0, overlaps  # one slot: each started after the one before ended


def test_a_stopping_worker_hands_back_what_it_claimed_ahead(backend: Backend) -> None:
    """SIGTERM mid-stream: once the worker has exited no job is left running under its
    claim (held jobs would otherwise wait out their lease), and none was charged."""
    app = backend.app()
    handles = app.enqueue_many([EnqueueRequest("sleeper", {"seconds": 0.001})] * 3000)
    ids = [h.id for h in handles]
    worker = backend.worker("--concurrency", "2")
    wait_for(
        lambda: _states(app, ids).get(State.COMPLETED.value, 0) >= 300,
        timeout=60,
        what="300 jobs done",
    )
    assert worker.stop() == 0
    states = _states(app, ids)
    assert State.RUNNING.value not in states, states
    assert states.get(State.QUEUED.value, 0) > 0  # it stopped mid-stream
    with app.client.jobs.engine.connect() as conn:
        charged = conn.execute(
            select(func.max(jobs.c.attempt - jobs.c.uncharged)).where(jobs.c.id.in_(ids))
        ).scalar_one()
    assert charged == 1
    assert "claimed ahead, unstarted" in worker.log()
