"""Isolated job types: each attempt in a child process that can be killed and may crash."""

from __future__ import annotations

import os
import signal

import pytest

from conveyor import State
from tests.conftest import Backend, wait_for


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _pid(b: Backend, job_id: str) -> int | None:
    path = b.marks / f"pid-{job_id}"
    return int(path.read_text().split()[0]) if path.exists() else None


def test_isolated_job_completes_with_progress(db_backend: Backend) -> None:
    app = db_backend.app()
    db_backend.worker()
    view = app.enqueue("isolated_add", {"a": 2, "b": 3}).wait(timeout=30)
    assert view.state is State.COMPLETED and view.result == 5
    assert view.stage == "two" and view.message == "almost"


@pytest.mark.parametrize("how", ["exit", "segv", "kill"])
def test_a_crash_fails_only_its_attempt_and_poison_ends_failed(
    db_backend: Backend, how: str
) -> None:
    app = db_backend.app()
    worker = db_backend.worker()
    view = app.enqueue("isolated_crash", {"how": how}).wait(timeout=60)
    assert view.state is State.FAILED  # retries=2: three crashes, then it stops
    assert [a.outcome for a in view.attempts] == ["crashed"] * 3
    assert view.error and view.error["type"] == "Crashed"
    expected = {"exit": "exit status 3", "segv": "SIGSEGV", "kill": "SIGKILL"}[how]
    assert expected in view.error["message"]
    assert worker.proc.poll() is None  # the worker lives on
    assert app.enqueue("add", {"a": 1}).wait(timeout=20).result == 1


def test_permanent_error_in_a_child_is_not_retried(db_backend: Backend) -> None:
    app = db_backend.app()
    db_backend.worker()
    view = app.enqueue("isolated_crash", {"how": "permanent"}).wait(timeout=30)
    assert view.state is State.FAILED and [a.outcome for a in view.attempts] == ["error"]
    assert view.error and view.error["message"] == "bad input"


def test_timeout_and_cancel_kill_the_child(db_backend: Backend) -> None:
    b = db_backend
    app = b.app()
    b.worker()
    timed = app.enqueue("isolated_sleep", {"seconds": 60})
    view = timed.wait(timeout=30)
    assert view.state is State.FAILED and view.attempts[0].outcome == "timeout"
    pid = _pid(b, timed.id)
    assert pid is not None
    wait_for(lambda: not _alive(pid), timeout=5, what="the timed-out child to be gone")

    canceled = app.enqueue("isolated_sleep", {"seconds": 60}, timeout="60s")
    wait_for(lambda: _pid(b, canceled.id) is not None, timeout=20, what="the child to start")
    app.cancel(canceled.id)
    assert canceled.wait(timeout=20).state is State.CANCELED
    child = _pid(b, canceled.id)
    assert child is not None
    wait_for(lambda: not _alive(child), timeout=5, what="the canceled child to be gone")


def test_no_orphan_child_when_the_worker_is_killed(db_backend: Backend) -> None:
    b = db_backend
    app = b.app()
    worker = b.worker()
    handle = app.enqueue("isolated_sleep", {"seconds": 60}, timeout="60s")
    wait_for(lambda: _pid(b, handle.id) is not None, timeout=20, what="the child to start")
    child = _pid(b, handle.id)
    assert child is not None and _alive(child)
    worker.signal(signal.SIGKILL)
    worker.wait()
    wait_for(lambda: not _alive(child), timeout=10, what="the orphan to die")
    assert os.getpid() != child
