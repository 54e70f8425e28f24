"""``--processes N``: children restarted when they die, none left behind."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

from conveyor.store import WorkerStore
from tests.conftest import Backend, wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _worker_pids(app) -> set[int]:  # type: ignore[no-untyped-def]
    store = WorkerStore(app.client.jobs.engine)
    since = datetime.now(UTC) - timedelta(seconds=3)
    return {w["pid"] for w in store.alive(since)}


def _two_workers(app) -> set[int] | None:  # type: ignore[no-untyped-def]
    pids = _worker_pids(app)
    return pids if len(pids) == 2 else None


def test_supervisor_restarts_dead_children_and_stops_cleanly(pg_redis: Backend) -> None:
    app = pg_redis.app()
    sup = pg_redis.worker("--processes", "2")
    pids = wait_for(lambda: _two_workers(app), what="2 workers")
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(_worker_pids(app) - pids) == 1, timeout=20, what="a replacement")
    handles = [app.enqueue("add", {"a": i}) for i in range(20)]
    assert all(h.wait(timeout=20).result == i for i, h in enumerate(handles))
    children = _worker_pids(app) - {victim}
    assert sup.stop() == 0
    assert not any(_alive(p) for p in children)


def test_children_die_with_a_killed_supervisor(pg_redis: Backend) -> None:
    app = pg_redis.app()
    sup = pg_redis.worker("--processes", "2")
    pids = wait_for(lambda: _two_workers(app), what="2 workers")
    sup.signal(signal.SIGKILL)
    sup.wait()
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=15, what="children to exit")


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def test_children_are_forked_from_the_prepared_supervisor(pg_redis: Backend) -> None:
    """The children are copies of the supervisor (same command line, its own children), not
    new interpreters that import everything again, and they serve jobs."""
    app = pg_redis.app()
    sup = pg_redis.worker("--processes", "2")
    pids = wait_for(lambda: _two_workers(app), what="2 workers")
    for pid in pids:
        assert _ppid(pid) == sup.proc.pid
        assert _cmdline(pid) == _cmdline(sup.proc.pid)
    assert app.enqueue("add", {"a": 7}).wait(timeout=20).result == 7
    assert sup.stop() == 0
