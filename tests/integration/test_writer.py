"""The worker's writer against the real databases: a batch the database refuses is split so
one bad finish cannot hold back the others, and nothing it logs shows values."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from conveyor import State
from conveyor.core.outcome import AttemptOutcome
from conveyor.dispatch.base import NO_EVENTS, NO_HANDOFF
from conveyor.store import ClaimStore, Finish, RunStore
from conveyor.store.clock import DbClock
from conveyor.store.stats import StatsStore
from conveyor.worker.context import Progress
from conveyor.worker.writer import Writer
from tests.conftest import Backend

SECRET = "result-that-must-never-be-logged"


async def _io(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(fn, *args, **kwargs)


def _writer(runs: RunStore) -> Writer:
    return Writer(
        runs,
        StatsStore(runs.engine),
        NO_HANDOFF,
        NO_EVENTS,
        _io,
        DbClock(runs.engine).now,
    )


def _finish(job, **values) -> Finish:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    return Finish(
        job_id=job.id,
        attempt=job.attempt,
        state=State.COMPLETED,
        outcome=AttemptOutcome.COMPLETED,
        worker_id="w",
        started_at=job.started_at,
        finished_at=now,
        **values,
    )


def test_a_refused_finish_fails_alone(
    db_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = db_backend.app()
    runs = RunStore(app.client.jobs.engine)
    handles = [app.enqueue("add", {"a": i}) for i in range(9)]
    claimed = ClaimStore(runs.engine).claim_ids(
        [h.id for h in handles], "w", datetime.now(UTC), lease_s=30
    )
    assert len(claimed) == 9
    # A value past every boundary check (written here directly): text no database column
    # can hold. Before the split, the writer retried the whole batch forever.
    bad = claimed[4]
    finishes = [
        _finish(job, result={"secret": SECRET}, message="m\ud800" if job is bad else None)
        for job in claimed
    ]
    writer = _writer(runs)
    for finish, job in zip(finishes, claimed, strict=True):
        writer.finished(finish, job)

    asyncio.run(asyncio.wait_for(writer.flush_finishes(final=True), timeout=30))

    for job in claimed:
        view = app.get(job.id)
        if job is bad:
            assert view.state is State.FAILED and view.result is None
            assert view.error and view.error["type"] == "Unstorable"
            assert "could not be stored" in view.error["message"]
        else:
            assert view.state is State.COMPLETED and view.result == {"secret": SECRET}
    assert writer.stats.finished == 9
    assert SECRET not in caplog.text
    assert "refused its finish" in caplog.text


def test_a_refused_progress_report_is_dropped_alone(db_backend: Backend) -> None:
    app = db_backend.app()
    runs = RunStore(app.client.jobs.engine)
    handles = [app.enqueue("add", {"a": i}) for i in range(3)]
    claimed = ClaimStore(runs.engine).claim_ids(
        [h.id for h in handles], "w", datetime.now(UTC), lease_s=30
    )
    writer = _writer(runs)
    for n, job in enumerate(claimed):
        progress = Progress(10.0 * n, None)
        progress.message = "m\ud800" if n == 1 else f"ok {n}"  # past ctx.progress's check
        writer.progressed(job, progress)
    asyncio.run(asyncio.wait_for(writer.flush_progress(), timeout=30))
    messages = [app.get(job.id).message for job in claimed]
    assert messages == ["ok 0", None, "ok 2"]
