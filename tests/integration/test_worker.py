"""End to end through real worker processes, on every backend."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest

from conveyor import State
from tests.conftest import Backend, wait_for, wait_serving


def test_async_and_sync_handlers_complete(backend: Backend) -> None:
    app = backend.app()
    worker = backend.worker("--queues", "default,low")
    a = app.enqueue("add", {"a": 2, "b": 3})
    s = app.enqueue("sync_add", {"a": 40, "b": 2})
    assert app.get(s.id).queue == "low"
    assert a.wait(timeout=20).result == 5
    view = s.wait(timeout=20)
    assert view.state is State.COMPLETED and view.result == 42
    assert [x.outcome for x in view.attempts] == ["completed"]
    assert view.attempts[0].worker_id and view.started_at and view.finished_at
    assert worker.stop() == 0


def test_progress_follows_declared_stages(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    handle = app.enqueue("staged", {"pause": 0.4})
    seen = wait_for(lambda: app.get(handle.id).stage == "analyzing", what="stage analyzing")
    assert seen
    running = app.get(handle.id)
    assert running.state is State.RUNNING and running.progress == 50.0
    done = handle.wait(timeout=20)
    assert done.state is State.COMPLETED
    assert done.stage == "embedding" and done.message == "almost" and done.progress == 100.0


def test_retries_back_off_inside_their_jittered_windows(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    view = app.enqueue("flaky", {"fail_times": 2}).wait(timeout=30)
    assert view.state is State.COMPLETED and view.result == 3
    outcomes = [(a.attempt, a.outcome, a.error_type) for a in view.attempts]
    assert outcomes == [(1, "error", "Flaky"), (2, "error", "Flaky"), (3, "completed", None)]
    # backoff_base=0.2s: windows 0.2 s then 0.4 s, plus at most ~1 s of promotion latency
    for previous, following, window in zip(
        view.attempts[:-1], view.attempts[1:], (0.2, 0.4), strict=True
    ):
        assert previous.finished_at and following.started_at
        gap = (following.started_at - previous.finished_at).total_seconds()
        assert 0 <= gap <= window + 1.0, (gap, window)


def test_exhausted_retries_fail(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    view = app.enqueue("flaky", {"fail_times": 99}).wait(timeout=30)
    assert view.state is State.FAILED
    assert len(view.attempts) == 4  # retries=3
    assert view.error and view.error["type"] == "Flaky"
    assert "Traceback" in (view.error["traceback"] or "")


def test_permanent_and_dont_retry_on_fail_at_once(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    permanent = app.enqueue("permanent").wait(timeout=20)
    assert permanent.state is State.FAILED and len(permanent.attempts) == 1
    assert permanent.error == {
        "type": "Permanent",
        "message": "bad input, never retry",
        "traceback": permanent.error["traceback"],
    }
    fatal = app.enqueue("flaky", {"fail_times": 0, "fatal": True}).wait(timeout=20)
    assert fatal.state is State.FAILED and [a.outcome for a in fatal.attempts] == ["error"]


def test_timeouts_fail_async_and_sync_attempts(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    slow_async = app.enqueue("slow_async", {"seconds": 30})
    slow_sync = app.enqueue("slow_sync", {"seconds": 30})
    for handle in (slow_async, slow_sync):
        view = handle.wait(timeout=10)
        assert view.state is State.FAILED
        assert view.attempts[0].outcome == "timeout"
        assert view.error and view.error["type"] == "Timeout"
        assert view.finished_at and view.started_at
        assert (view.finished_at - view.started_at).total_seconds() < 3
    marks = backend.marks / f"slow_sync-{slow_sync.id}"
    wait_for(marks.exists, timeout=5, what="the sync handler to see ctx.cancelled")


def test_cancel_queued_job_never_runs(backend: Backend) -> None:
    app = backend.app()
    queued = app.enqueue("sleeper", {"seconds": 0})
    delayed = app.enqueue("sleeper", {"seconds": 0}, delay="1h")
    assert app.get(delayed.id).state is State.SCHEDULED
    for handle in (queued, delayed):
        assert app.cancel(handle.id).state is State.CANCELED
        assert app.cancel(handle.id).state is State.CANCELED  # repeating is harmless
    backend.worker()
    probe = app.enqueue("add", {"a": 1})
    assert probe.wait(timeout=20).state is State.COMPLETED
    for handle in (queued, delayed):
        assert app.get(handle.id).state is State.CANCELED
        assert not (backend.marks / f"sleeper-{handle.id}").exists()


@pytest.mark.parametrize("job_type", ["sleeper", "sync_sleeper"])
def test_cancel_running_job_stops_it(backend: Backend, job_type: str) -> None:
    app = backend.app()
    backend.worker()
    handle = app.enqueue(job_type, {"seconds": 60})
    wait_for(lambda: app.get(handle.id).state is State.RUNNING, what="the job to run")
    requested = app.cancel(handle.id)
    assert requested.state in (State.RUNNING, State.CANCELED)
    view = handle.wait(timeout=10)
    assert view.state is State.CANCELED
    assert [a.outcome for a in view.attempts] == ["canceled"]


def test_delayed_job_runs_when_due(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    wait_serving(app)  # the bound is on promotion, not on a worker process starting
    handle = app.enqueue("add", {"a": 1}, delay="1s")
    view = app.get(handle.id)
    assert view.state is State.SCHEDULED and view.scheduled_at
    done = handle.wait(timeout=20)
    assert done.state is State.COMPLETED and done.started_at
    late = (done.started_at - view.scheduled_at).total_seconds()
    assert 0 <= late <= 1.0, late


def test_retry_of_failed_job_runs_again_keeping_history(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    handle = app.enqueue("permanent")
    assert handle.wait(timeout=20).state is State.FAILED
    assert app.retry(handle.id).state is State.QUEUED
    view = handle.wait(timeout=20)
    assert view.state is State.FAILED
    assert [a.attempt for a in view.attempts] == [1, 2]


def test_too_large_result_fails_the_attempt_not_the_worker(backend: Backend) -> None:
    app = backend.app()
    worker = backend.worker(CONVEYOR_MAX_RESULT_BYTES="1000")
    view = app.enqueue("big_result", {"size": 5000}).wait(timeout=20)
    assert view.state is State.FAILED and "over the limit" in view.error["message"]
    assert app.enqueue("add", {"a": 1}).wait(timeout=20).state is State.COMPLETED
    assert worker.proc.poll() is None


def test_graceful_shutdown_lets_running_jobs_finish(backend: Backend) -> None:
    app = backend.app()
    worker = backend.worker("--grace", "20")
    handles = [app.enqueue("sleeper", {"seconds": 1.5}) for _ in range(3)]
    marks = [backend.marks / f"sleeper-{h.id}" for h in handles]  # their handlers started
    wait_for(lambda: all(mark.exists() for mark in marks), what="jobs running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    for h in handles:
        assert app.get(h.id).state is State.COMPLETED


def test_shutdown_after_grace_hands_jobs_back_without_charging(backend: Backend) -> None:
    app = backend.app()
    worker = backend.worker("--grace", "0.5")
    handle = app.enqueue("sleeper", {"seconds": 2.5})  # retries=0: one charged attempt only
    # Its handler started (claimed is not enough: a claim that returns after the stop was
    # asked is handed back unstarted, with no attempt to record).
    started = backend.marks / f"sleeper-{handle.id}"
    wait_for(started.exists, what="the job's handler to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    back = app.get(handle.id)
    assert back.state is State.QUEUED
    assert [a.outcome for a in back.attempts] == ["shutdown"]
    backend.worker()
    view = handle.wait(timeout=20)
    assert view.state is State.COMPLETED
    assert [a.outcome for a in view.attempts] == ["shutdown", "completed"]


def test_second_signal_exits_at_once(backend: Backend) -> None:
    app = backend.app()
    worker = backend.worker("--grace", "60")
    handle = app.enqueue("sleeper", {"seconds": 60})
    wait_for(lambda: app.get(handle.id).state is State.RUNNING, what="the job to run")
    worker.signal(signal.SIGTERM)
    worker.signal(signal.SIGINT)
    assert worker.wait(10) == 0
    assert app.get(handle.id).state is State.QUEUED


def test_lost_worker_job_is_recovered(backend: Backend) -> None:
    app = backend.app()
    first = backend.worker()
    handle = app.enqueue("flaky", {"fail_times": 0}, delay=timedelta(0))
    sleeper = app.enqueue("sleeper", {"seconds": 60})
    wait_for(lambda: app.get(sleeper.id).state is State.RUNNING, what="the job to run")
    assert handle.wait(timeout=10).state is State.COMPLETED  # finished before the crash
    first.signal(signal.SIGKILL)
    first.wait()
    backend.worker()
    view = app.wait(sleeper.id, timeout=30)
    # retries=0, so the lost attempt fails the job; the attempt says why
    assert view.state is State.FAILED
    assert [a.outcome for a in view.attempts] == ["worker_lost"]
