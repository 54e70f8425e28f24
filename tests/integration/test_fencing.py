"""Every write after a claim is fenced by (job id, attempt): stale workers cannot win."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from conveyor import JobNotFound, State
from conveyor.core.outcome import AttemptOutcome
from conveyor.core.settings import Settings
from conveyor.reconciler import Reconciler, build_reconciler
from conveyor.store import (
    ClaimStore,
    Engine,
    Finish,
    ProgressUpdate,
    RunStore,
    UpkeepStore,
    WorkerStore,
)
from conveyor.store.clock import DbClock
from conveyor.store.tables import attempts
from tests.apps.jobs import app as jobs_app
from tests.conftest import Backend


def _reconciler(engine: Engine, settings: Settings | None = None) -> Reconciler:
    """A database-dispatch reconciler whose duties the tests call with ``now`` passed in."""
    return build_reconciler(
        upkeep=UpkeepStore(engine),
        runs=RunStore(engine),
        workers=WorkerStore(engine),
        leases=None,
        handoff=None,
        streams=None,
        clock=DbClock(engine),
        io=asyncio.to_thread,
        registry=jobs_app.registry,
        settings=settings or Settings(),
        holder="test",
        queues=[],
    )


def test_stale_attempt_writes_are_rejected(backend: Backend) -> None:
    app = backend.app()
    runs = RunStore(app.client.jobs.engine)
    handle = app.enqueue("sleeper", {"seconds": 1})
    now = datetime.now(UTC)

    # worker A claims with a short lease, then stalls past it
    (a,) = ClaimStore(runs.engine).claim_ids([handle.id], "worker-a", now, lease_s=1)
    assert a.attempt == 1
    later = now + timedelta(seconds=5)
    assert _reconciler(runs.engine).rescuer.run_once(later) == 1
    lost = app.get(handle.id)
    assert lost.state is State.FAILED  # sleeper has retries=0
    assert [x.outcome for x in lost.attempts] == ["worker_lost"]

    # an operator retries it; worker B claims attempt 2
    app.retry(handle.id)
    (b,) = ClaimStore(runs.engine).claim_ids([handle.id], "worker-b", later, lease_s=30)
    assert b.attempt == 2

    # A wakes up: its progress and its finish are both fenced off
    stale_progress = ProgressUpdate(handle.id, a.attempt, 99.0, "stale", "from A")
    assert runs.save_progress([stale_progress], later) == 0
    stale = Finish(
        job_id=handle.id,
        attempt=a.attempt,
        state=State.COMPLETED,
        outcome=AttemptOutcome.COMPLETED,
        worker_id="worker-a",
        started_at=now,
        finished_at=later,
        result="from A",
    )
    assert runs.finish([stale]) == 0
    assert runs.renew_leases("worker-a", [(handle.id, a.attempt)], later, 30) == 0
    assert runs.cancel_requests([(handle.id, a.attempt)]) == [handle.id]  # A must stop

    # B's writes go through
    assert runs.save_progress([ProgressUpdate(handle.id, b.attempt, 50.0, None, "B")], later) == 1
    fresh = Finish(
        job_id=handle.id,
        attempt=b.attempt,
        state=State.COMPLETED,
        outcome=AttemptOutcome.COMPLETED,
        worker_id="worker-b",
        started_at=later,
        finished_at=later,
        result="from B",
    )
    assert runs.finish([fresh]) == 1
    assert runs.finish([fresh]) == 0  # repeating a finish changes nothing

    view = app.get(handle.id)
    assert view.state is State.COMPLETED and view.result == "from B"
    assert view.message == "B"
    assert [(x.attempt, x.outcome, x.worker_id) for x in view.attempts] == [
        (1, "worker_lost", "worker-a"),
        (2, "completed", "worker-b"),
    ]


def test_a_stale_finish_between_recovery_and_the_next_claim_is_rejected(
    backend: Backend,
) -> None:
    """After a lost run is recovered, and before any worker claims the job again, the job is
    on the same attempt number: only ``state = running`` fences the old worker off."""
    app = backend.app()
    runs = RunStore(app.client.jobs.engine)
    handle = app.enqueue("add", {"a": 1})  # retried when lost
    now = datetime.now(UTC)
    (a,) = ClaimStore(runs.engine).claim_ids([handle.id], "worker-a", now, lease_s=1)
    later = now + timedelta(seconds=5)
    assert _reconciler(runs.engine).rescuer.run_once(later) == 1
    assert app.get(handle.id).state is State.RETRYING
    stale = Finish(
        job_id=handle.id,
        attempt=a.attempt,
        state=State.COMPLETED,
        outcome=AttemptOutcome.COMPLETED,
        worker_id="worker-a",
        started_at=now,
        finished_at=later,
        result="from A",
    )
    assert runs.finish([stale]) == 0
    assert runs.save_progress([ProgressUpdate(handle.id, a.attempt, 99.0, None, "A")], later) == 0
    assert runs.renew_leases("worker-a", [(handle.id, a.attempt)], later, 30) == 0
    view = app.get(handle.id)
    assert view.state is State.RETRYING and view.result is None and view.message != "A"
    assert [(x.attempt, x.outcome) for x in view.attempts] == [(1, "worker_lost")]


def test_recovery_loses_to_a_renewed_lease(backend: Backend) -> None:
    app = backend.app()
    runs = RunStore(app.client.jobs.engine)
    handle = app.enqueue("sleeper", {"seconds": 1})
    now = datetime.now(UTC)
    (a,) = ClaimStore(runs.engine).claim_ids([handle.id], "worker-a", now, lease_s=1)
    expired = UpkeepStore(runs.engine).expired_runs(now + timedelta(seconds=2))
    assert [r.id for r in expired] == [handle.id]
    # the worker renews just before the recovery writes
    assert runs.renew_leases("worker-a", [(handle.id, a.attempt)], now + timedelta(seconds=2), 30)
    recovery = Finish(
        job_id=handle.id,
        attempt=a.attempt,
        state=State.FAILED,
        outcome=AttemptOutcome.WORKER_LOST,
        worker_id="worker-a",
        started_at=now,
        finished_at=now + timedelta(seconds=2),
        expired_before=now + timedelta(seconds=2),
    )
    assert runs.finish([recovery]) == 0
    view = app.get(handle.id)
    assert view.state is State.RUNNING and view.attempts == []  # no attempt row written


def test_a_lost_run_that_was_being_canceled_ends_canceled(backend: Backend) -> None:
    app = backend.app()
    runs = RunStore(app.client.jobs.engine)
    handle = app.enqueue("flaky", {"fail_times": 0})  # retries=3: would otherwise retry
    now = datetime.now(UTC)
    ClaimStore(runs.engine).claim_ids([handle.id], "worker-a", now, lease_s=1)
    assert app.cancel(handle.id).cancel_requested
    assert _reconciler(runs.engine).rescuer.run_once(now + timedelta(seconds=5)) == 1
    view = app.get(handle.id)
    assert view.state is State.CANCELED
    assert [a.outcome for a in view.attempts] == ["worker_lost"]


def test_retention_deletes_old_finished_jobs_only(backend: Backend) -> None:
    app = backend.app()
    runs = RunStore(app.client.jobs.engine)
    done = [app.enqueue("add", {"a": i}) for i in range(3)]
    failed = app.enqueue("add", {"a": 9})
    waiting = app.enqueue("add", {"a": 10})
    now = datetime.now(UTC)
    ids = [h.id for h in [*done, failed]]
    claimed = ClaimStore(runs.engine).claim_ids(ids, "w", now, 30)
    runs.finish(
        [
            Finish(
                job_id=j.id, attempt=j.attempt,
                state=State.FAILED if j.id == failed.id else State.COMPLETED,
                outcome=AttemptOutcome.COMPLETED, worker_id="w", started_at=now,
                finished_at=now,
            )
            for j in claimed
        ]
    )  # fmt: skip
    settings = Settings(retention_completed_seconds=60, retention_failed_seconds=3600)
    cleaner = _reconciler(runs.engine, settings).cleaner
    assert cleaner.run_once(now + timedelta(seconds=30)) == 0  # not old enough
    assert cleaner.run_once(now + timedelta(seconds=120)) == 3  # completed ones
    for h in done:
        with pytest.raises(JobNotFound):
            app.get(h.id)
    assert app.get(failed.id).state is State.FAILED  # kept longer
    assert app.get(waiting.id).state is State.QUEUED  # never touched
    assert cleaner.run_once(now + timedelta(hours=2)) == 1
    with runs.engine.connect() as conn:  # their attempts went with them (no cascade does it)
        left = conn.execute(select(attempts.c.job_id).where(attempts.c.job_id.in_(ids))).all()
    assert left == []


def test_a_first_attempt_that_completed_is_recorded_by_the_job_row_alone(backend: Backend) -> None:
    app = backend.app()
    runs = RunStore(app.client.jobs.engine)
    first, second = app.enqueue("add", {"a": 1}), app.enqueue("add", {"a": 2})
    now = datetime.now(UTC)
    claimed = {
        j.id: j for j in ClaimStore(runs.engine).claim_ids([first.id, second.id], "w1", now, 30)
    }
    later = now + timedelta(seconds=1)
    runs.finish(
        [
            Finish(job_id=first.id, attempt=claimed[first.id].attempt, state=State.COMPLETED,
                   outcome=AttemptOutcome.COMPLETED, worker_id="w1", started_at=now,
                   finished_at=later, result=3),
            Finish(job_id=second.id, attempt=claimed[second.id].attempt, state=State.FAILED,
                   outcome=AttemptOutcome.ERROR, worker_id="w1", started_at=now,
                   finished_at=later),
        ]
    )  # fmt: skip
    with runs.engine.connect() as conn:
        rows = conn.execute(select(attempts.c.job_id, attempts.c.outcome)).all()
    assert [(str(j), o) for j, o in rows] == [(second.id, "error")]  # no row for the first
    view = app.get(first.id)
    assert view.worker_id == "w1" and view.result == 3
    (attempt,) = view.attempts
    assert (attempt.attempt, attempt.outcome, attempt.worker_id) == (1, "completed", "w1")
    assert (attempt.started_at, attempt.finished_at) == (view.started_at, view.finished_at)
    assert [a.outcome for a in app.get(second.id).attempts] == ["error"]
