"""A worker that cannot make progress says so and replaces itself (issue 13, defects 3 and 7):
sync handlers that never return hold their threads; an async handler that blocks the event
loop stalls every job on the worker. Real worker processes, real databases (the process-level
behaviour, the same on every backend, on SQLite alone)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from conveyor import State
from conveyor.api.schemas import WorkerPublic
from tests.api.conftest import api_for
from tests.conftest import Backend, wait_for


def _hangs(backend: Backend) -> int:
    path = Path(backend.marks) / "hang_sync"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _complete(app, count: int, timeout: float = 30, job: str = "add") -> None:  # type: ignore[no-untyped-def]
    handles = [app.enqueue(job, {"a": i, "b": 1}) for i in range(count)]
    for i, handle in enumerate(handles):
        view = handle.wait(timeout=timeout)
        assert view.state is State.COMPLETED and view.result == i + 1


def test_a_stuck_thread_holds_its_slot_and_is_reported(db_backend: Backend) -> None:
    app = db_backend.app()
    worker = db_backend.worker("--concurrency", "4")
    hung = app.enqueue("hang_sync").wait(timeout=20)
    assert hung.state is State.FAILED and hung.error and hung.error["type"] == "Timeout"
    with api_for(app) as api:

        def unhealthy() -> dict | None:  # type: ignore[type-arg]
            rows = api.get("/workers").json()
            return next((w for w in rows if not w["healthy"]), None)

        row = wait_for(unhealthy, timeout=10, what="the worker to report its stuck thread")
    assert "1 of 4 slots held by threads that outlived their attempt" in row["problem"]
    assert WorkerPublic(**row).healthy is False
    _complete(app, 20)  # the three free slots keep working
    assert "its thread is still running after the attempt ended" in worker.log()
    assert worker.proc.poll() is None


def test_stuck_threads_starving_a_worker_make_it_replace_itself(db_backend: Backend) -> None:
    app = db_backend.app()
    worker = db_backend.worker("--concurrency", "2")  # 2 slots, 6 threads
    pid = worker.proc.pid
    hung = [app.enqueue("hang_sync") for _ in range(6)]
    # Before, the six hung threads took every thread the worker had: the next sync jobs sat
    # in `running` forever, their leases renewed. Now each pair of stuck threads makes the
    # worker replace itself.
    _complete(app, 10, timeout=60, job="sync_add")
    for handle in hung:
        view = handle.wait(timeout=20)
        assert view.state is State.FAILED and view.error and view.error["type"] == "Timeout"
    log = worker.log()
    assert "stopping to be replaced by a fresh process" in log
    assert log.count("restarts itself") >= 2
    assert worker.proc.poll() is None and worker.proc.pid == pid  # exec'd in place
    assert _hangs(db_backend) == 6  # each hung job ran once


def test_a_supervised_worker_is_restarted_by_its_supervisor(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    worker = sqlite_backend.worker("--concurrency", "1", "--processes", "2")
    handles = [app.enqueue("hang_sync") for _ in range(2)]
    for handle in handles:
        assert handle.wait(timeout=20).state is State.FAILED
    _complete(app, 20)
    wait_for(lambda: "exits to be replaced" in worker.log(), timeout=15, what="a replacement")
    assert "restarting" in worker.log()
    assert worker.stop() == 0


def test_an_async_handler_blocking_the_loop_past_its_timeout_is_a_timeout(
    sqlite_backend: Backend,
) -> None:
    app = sqlite_backend.app()
    # Leases longer than the block: a loop blocked past its lease stops renewing it, and the
    # neighbours are then recovered as lost (documented); here only the timeout is at stake.
    worker = sqlite_backend.worker(CONVEYOR_LEASE_SECONDS="10")
    neighbours = [app.enqueue("sleeper", {"seconds": 0.2}) for _ in range(3)]
    view = app.enqueue("block_loop", {"seconds": 3}).wait(timeout=20)
    assert view.state is State.FAILED and view.error
    assert view.error["type"] == "Timeout"  # was: completed
    assert "blocked the event loop" in view.error["message"]
    for handle in neighbours:
        assert handle.wait(timeout=20).state is State.COMPLETED
    wait_for(lambda: "event loop was blocked" in worker.log(), timeout=10, what="a warning")
    with api_for(app) as api:
        rows = wait_for(
            lambda: [w for w in api.get("/workers").json() if not w["healthy"]],
            timeout=10,
            what="the stall in the heartbeat",
        )
    assert "event loop was blocked for" in rows[0]["problem"]


def test_a_loop_blocked_for_two_leases_replaces_the_process(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    worker = sqlite_backend.worker()  # lease 3 s in tests: replaced after 6 s blocked
    pid = worker.proc.pid
    wedged = app.enqueue("block_loop", {"seconds": 600})
    view = wedged.wait(timeout=40)
    assert view.state is State.FAILED  # its lease ran out: recovered as worker_lost
    assert [a.outcome for a in view.attempts] == ["worker_lost"]
    _complete(app, 10)
    log = worker.log()
    assert "the event loop has been blocked for" in log
    assert "replacing this worker process" in log
    assert worker.proc.poll() is None and worker.proc.pid == pid


def test_a_paused_process_is_not_a_blocked_loop(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    worker = sqlite_backend.worker()
    assert app.enqueue("add", {"a": 1}).wait(timeout=20).result == 1
    worker.signal(signal.SIGSTOP)
    time.sleep(8)  # the fault itself: longer than two leases (6 s in tests)
    worker.signal(signal.SIGCONT)
    _complete(app, 5)
    log = worker.log()
    assert "replacing this worker process" not in log
    assert "event loop was blocked" not in log and "has been blocked" not in log
