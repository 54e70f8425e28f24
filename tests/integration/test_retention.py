"""Retention (docs/guarantees.md): completed jobs go RETENTION_COMPLETED_SECONDS after they
finished, failed and canceled ones after RETENTION_FAILED_SECONDS, `0` keeps them, with their
attempts, in batches of 1,000; waiting and running jobs are never deleted.

Driven through the reconciler's retention duty (``Cleaner``) with ``now`` passed in: no
sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from conveyor import Conveyor, JobNotFound, State
from conveyor.client import EnqueueRequest
from conveyor.core.outcome import AttemptOutcome, ErrorInfo
from conveyor.reconciler.retention import BATCH, Cleaner
from conveyor.store import ClaimStore, Finish, RunStore, UpkeepStore
from conveyor.store.tables import attempts, jobs
from tests.conftest import Backend, wait_for

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # when the test's jobs finished
COMPLETED_S = 60.0
FAILED_S = 3600.0


class CountingUpkeep(UpkeepStore):
    """The real store, noting what each purge call deleted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.purged: list[int] = []

    def purge(self, states: Sequence[State], finished_before: datetime, limit: int = 1000) -> int:
        deleted = super().purge(states, finished_before, limit)
        self.purged.append(deleted)
        return deleted


def _cleaner(
    app: Conveyor, completed_s: float, failed_s: float, batches: int = 10
) -> tuple[Cleaner, CountingUpkeep]:
    """The retention duty (``batches``: per rule a pass), and the store it purges through."""
    upkeep = CountingUpkeep(app.client.jobs.engine)
    return Cleaner(upkeep, completed_s, failed_s, batches), upkeep


def _end(
    upkeep: UpkeepStore, ids: list[str], state: State, outcome: AttemptOutcome, at: datetime
) -> None:
    """Claim the jobs and end their attempt as ``state`` at ``at``."""
    claimed = ClaimStore(upkeep.engine).claim_ids(ids, "w", at - timedelta(seconds=1), 30)
    assert len(claimed) == len(ids)
    error = None if outcome is AttemptOutcome.COMPLETED else ErrorInfo("Boom", "it failed")
    run_at = at if state is State.RETRYING else None
    finishes = [
        Finish(job_id=j.id, attempt=j.attempt, state=state, outcome=outcome, worker_id="w",
               started_at=at - timedelta(seconds=1), finished_at=at, error=error, run_at=run_at)
        for j in claimed
    ]  # fmt: skip
    assert RunStore(upkeep.engine).finish(finishes) == len(ids)


def _finished_jobs(app: Conveyor, upkeep: UpkeepStore) -> dict[str, str]:
    """One job per way of ending, all at T0, most with attempt rows: name -> id."""
    made = {name: app.enqueue("add", {"a": i}).id for i, name in enumerate(NAMES)}
    _end(upkeep, [made["completed"]], State.COMPLETED, AttemptOutcome.COMPLETED, T0)
    _end(upkeep, [made["completed on retry"]], State.RETRYING, AttemptOutcome.ERROR, T0)
    upkeep.promote_due(T0)
    _end(upkeep, [made["completed on retry"]], State.COMPLETED, AttemptOutcome.COMPLETED, T0)
    _end(upkeep, [made["failed"]], State.FAILED, AttemptOutcome.ERROR, T0)
    app.client.jobs.cancel(made["canceled waiting"], T0)
    claims = ClaimStore(upkeep.engine)
    claims.claim_ids([made["canceled running"]], "w", T0 - timedelta(seconds=1), 30)
    app.client.jobs.cancel(made["canceled running"], T0)  # asks its worker ...
    _end_claimed(upkeep, made["canceled running"], State.CANCELED, AttemptOutcome.CANCELED)
    return made


def _end_claimed(upkeep: UpkeepStore, job_id: str, state: State, outcome: AttemptOutcome) -> None:
    """... which ends the attempt as canceled (the job was claimed already)."""
    finish = Finish(job_id=job_id, attempt=1, state=state, outcome=outcome, worker_id="w",
                    started_at=T0 - timedelta(seconds=1), finished_at=T0)  # fmt: skip
    assert RunStore(upkeep.engine).finish([finish]) == 1


NAMES = ["completed", "completed on retry", "failed", "canceled waiting", "canceled running"]
COMPLETED = {"completed", "completed on retry"}


def _present(app: Conveyor, ids: dict[str, str]) -> set[str]:
    query = select(jobs.c.id).where(jobs.c.id.in_(list(ids.values())))
    with app.client.jobs.engine.connect() as conn:
        found = {str(i) for i in conn.execute(query).scalars()}
    return {name for name, job_id in ids.items() if job_id in found}


def _attempt_rows(app: Conveyor, ids: dict[str, str]) -> dict[str, int]:
    """Attempt rows per job name (jobs without any are left out)."""
    by_id = {v: k for k, v in ids.items()}
    query = (
        select(attempts.c.job_id, func.count())
        .where(attempts.c.job_id.in_(list(ids.values())))
        .group_by(attempts.c.job_id)
    )
    with app.client.jobs.engine.connect() as conn:
        return {by_id[str(j)]: n for j, n in conn.execute(query)}


def test_finished_jobs_go_after_their_retention_with_their_attempts(db_backend: Backend) -> None:
    app = db_backend.app()
    cleaner, upkeep = _cleaner(app, COMPLETED_S, FAILED_S)
    ids = _finished_jobs(app, upkeep)
    assert {app.get(i).state for i in ids.values()} == {
        State.COMPLETED, State.FAILED, State.CANCELED
    }  # fmt: skip
    rows = _attempt_rows(app, ids)
    assert rows == {"completed on retry": 2, "failed": 1, "canceled running": 1}

    assert cleaner.run_once(T0 + timedelta(seconds=COMPLETED_S - 1)) == 0
    assert _present(app, ids) == set(NAMES)
    assert cleaner.run_once(T0 + timedelta(seconds=COMPLETED_S + 1)) == 2
    assert _present(app, ids) == set(NAMES) - COMPLETED
    assert _attempt_rows(app, ids) == {"failed": 1, "canceled running": 1}  # theirs are gone

    assert cleaner.run_once(T0 + timedelta(seconds=FAILED_S - 1)) == 0
    assert cleaner.run_once(T0 + timedelta(seconds=FAILED_S + 1)) == 3
    assert _present(app, ids) == set()
    assert _attempt_rows(app, ids) == {}


@pytest.mark.parametrize(
    ("completed_s", "failed_s", "kept"),
    [(0, 0, set(NAMES)), (0, FAILED_S, COMPLETED), (COMPLETED_S, 0, set(NAMES) - COMPLETED)],
)
def test_zero_keeps_them(
    db_backend: Backend, completed_s: float, failed_s: float, kept: set[str]
) -> None:
    app = db_backend.app()
    cleaner, upkeep = _cleaner(app, completed_s, failed_s)
    ids = _finished_jobs(app, upkeep)
    cleaner.run_once(T0 + timedelta(days=365 * 100))
    assert _present(app, ids) == kept


def test_waiting_and_running_jobs_are_never_deleted_however_old(db_backend: Backend) -> None:
    app = db_backend.app()
    cleaner, upkeep = _cleaner(app, completed_s=1, failed_s=1)
    ids = {
        "queued": app.enqueue("add", {"a": 1}).id,
        "scheduled": app.enqueue("add", {"a": 2}, delay="1h").id,
        "retrying": app.enqueue("add", {"a": 3}).id,
        "running": app.enqueue("add", {"a": 4}).id,
        "failed, then retried": app.enqueue("add", {"a": 5}).id,
        "completed": app.enqueue("add", {"a": 6}).id,  # the control: this one must go
    }
    now = datetime.now(UTC)
    _end(upkeep, [ids["retrying"]], State.RETRYING, AttemptOutcome.ERROR, now + timedelta(hours=1))
    ClaimStore(upkeep.engine).claim_ids([ids["running"]], "w", now, 30)
    _end(upkeep, [ids["failed, then retried"]], State.FAILED, AttemptOutcome.ERROR, now)
    app.retry(ids["failed, then retried"])
    _end(upkeep, [ids["completed"]], State.COMPLETED, AttemptOutcome.COMPLETED, now)
    # Every time a row has is made ancient: only its state may keep it.
    ancient = datetime(2000, 1, 1, tzinfo=UTC)
    with app.client.jobs.engine.begin() as conn:
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(list(ids.values())))
            .values(created_at=ancient, updated_at=ancient, scheduled_at=ancient,
                    started_at=ancient, finished_at=ancient)
        )  # fmt: skip
    states = {name: app.get(job_id).state.value for name, job_id in ids.items()}
    assert states == {
        "queued": "queued", "scheduled": "scheduled", "retrying": "retrying",
        "running": "running", "failed, then retried": "queued", "completed": "completed",
    }  # fmt: skip
    assert cleaner.run_once(now + timedelta(days=365 * 100)) == 1
    assert _present(app, ids) == set(ids) - {"completed"}
    assert _attempt_rows(app, ids) == {"retrying": 1, "failed, then retried": 1}


def test_deleted_in_batches_of_1000_until_done_a_bounded_number_per_pass(
    db_backend: Backend,
) -> None:
    app = db_backend.app()
    two_batches, upkeep = _cleaner(app, COMPLETED_S, FAILED_S, batches=2)
    requests = [EnqueueRequest("add", {"a": i}) for i in range(3500)]
    ids = [i.id for i in app.enqueue_many(requests)]
    _end(upkeep, ids, State.COMPLETED, AttemptOutcome.COMPLETED, T0)
    later = T0 + timedelta(seconds=COMPLETED_S + 1)

    # a pass allowed two batches per rule stops there; the next pass goes on
    assert two_batches.run_once(later) == 2000
    assert upkeep.purged == [1000, 1000, 0]  # completed: two full batches; failed: none
    upkeep.purged.clear()
    assert Cleaner(upkeep, COMPLETED_S, FAILED_S).run_once(later) == 1500
    assert upkeep.purged == [1000, 500, 0]  # until a batch comes back short
    with app.client.jobs.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(jobs)).scalar() == 0
    assert BATCH == 1000  # the batch size the promise states


def test_a_worker_applies_retention_by_itself(db_backend: Backend) -> None:
    b = db_backend
    b.extra_env.update(
        CONVEYOR_RETENTION_COMPLETED_SECONDS="1", CONVEYOR_RETENTION_FAILED_SECONDS="1"
    )
    app = b.app()
    waiting = app.enqueue("sync_add", {"a": 1})  # queue "low", which this worker does not serve
    b.worker("--queues", "default")
    done = app.enqueue("add", {"a": 2})
    failed = app.enqueue("permanent", {})
    assert done.wait(timeout=20).state is State.COMPLETED
    assert failed.wait(timeout=20).state is State.FAILED

    def gone(job_id: str) -> bool:
        try:
            app.get(job_id)
        except JobNotFound:
            return True
        return False

    # retention 1 s, applied on every full reconciler pass (RECONCILE_SECONDS = 0.5 here)
    wait_for(lambda: gone(done.id) and gone(failed.id), timeout=15, what="retention")
    assert app.get(waiting.id).state is State.QUEUED
