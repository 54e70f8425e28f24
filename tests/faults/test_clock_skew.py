"""Leases, heartbeats and due times follow the database's clock, not a host's (issue 14):
real worker and API processes under libfaketime, minutes behind and ahead of the database.

Before, a worker three minutes behind wrote leases that had expired when it wrote them: the
other worker's recovery took its healthy jobs away and ran them again.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from conveyor import State
from conveyor.client import EnqueueRequest
from tests.conftest import ROOT, Backend, WorkerProcess, _backend, wait_for

SKEWS = ["-180s", "+180s"]  # libfaketime offsets: three minutes behind, three ahead


@pytest.fixture(params=["postgres+redis", "postgres"])
def pg_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """PostgreSQL, with Redis dispatch and with database dispatch."""
    yield from _backend(request.param, request, tmp_path)


def _faketime(offset: str) -> dict[str, str]:
    """The environment that runs a process under libfaketime (preloaded, not through the
    ``faketime`` wrapper: its pid is the process's own, so stopping it stops the process)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is not installed (scripts/test installs the faketime package)"
    return {"LD_PRELOAD": found[0], "FAKETIME": offset, "FAKETIME_DONT_RESET": "1"}


def _skewed(backend: Backend, offset: str, *args: str) -> WorkerProcess:
    """``python -m conveyor ARGS`` under libfaketime, its clock ``offset`` off."""
    log_path = backend.tmp / f"skewed-{len(backend.workers)}.log"
    argv = [sys.executable, "-m", "conveyor", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=backend.env(**_faketime(offset)), cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    process = WorkerProcess(proc, log_path)
    backend.workers.append(process)  # stopped with the backend
    return process


def _starts(backend: Backend) -> Counter[tuple[str, int]]:
    path = backend.marks / "ledger"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter((f[1], int(f[2])) for f in (line.split() for line in lines) if f[0] == "start")


def test_the_skew_is_real() -> None:
    """The tool works: a process under faketime sees a clock three minutes off."""
    code = "import time; print(time.time())"
    env = {**os.environ, **_faketime("-180s")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert 170 < time.time() - float(out.stdout) < 190


@pytest.mark.parametrize("offset", SKEWS)
def test_a_skewed_worker_keeps_its_leases(pg_backend: Backend, offset: str) -> None:
    app = pg_backend.app()
    skewed = _skewed(pg_backend, offset, "worker", "--app", "tests.apps.jobs:app", "--queues",
                     "default", "--concurrency", "8")  # fmt: skip
    pg_backend.worker("--queues", "default", "--concurrency", "8")
    requests = [EnqueueRequest("ledger", {"seconds": 1.0}) for _ in range(48)]
    handles = app.enqueue_many(requests)
    views = [app.wait(h.id, timeout=60) for h in handles]
    assert [v.state for v in views] == [State.COMPLETED] * len(views)
    lost = [a.outcome for v in views for a in v.attempts if a.outcome != "completed"]
    assert lost == []  # before: healthy jobs recovered as worker_lost and run again
    starts = _starts(pg_backend)
    assert {h.id for h in handles} == {job_id for job_id, _ in starts}
    assert max(starts.values()) == 1 and all(attempt == 1 for _, attempt in starts)
    assert len({v.attempts[0].worker_id for v in views}) == 2  # both workers ran jobs
    alive = {w["id"] for w in _workers(app)}
    assert len(alive) == 2, "the skewed worker's heartbeat must count as recent"
    assert "off the database's" in skewed.log()  # it says its clock is off


def _workers(app) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    from conveyor.store.workers import WorkerStore

    since = app.client.clock.now() - timedelta(seconds=3 * app.settings.heartbeat_seconds)
    return WorkerStore(app.client.jobs.engine).alive(since)


@pytest.mark.parametrize("offset", SKEWS)
def test_a_skewed_api_schedules_on_the_database_clock(pg_redis: Backend, offset: str) -> None:
    pg_backend = pg_redis  # the API's clock is the point; the dispatch makes no difference
    app = pg_backend.app()
    pg_backend.worker()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = _skewed(pg_backend, offset, "api", "--app", "tests.apps.jobs:app", "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert api.proc.poll() is None, api.log()
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=20, what="the skewed API")
    before = app.client.clock.now()
    answer = httpx.post(f"{url}/jobs", json={"type": "add", "payload": {"a": 1}, "delay": "2s"})
    assert answer.status_code == 202, answer.text
    view = app.get(answer.json()["id"])
    assert view.state is State.SCHEDULED and view.scheduled_at
    # Due two seconds after the request on the database's clock (not three minutes off).
    assert abs((view.scheduled_at - before).total_seconds() - 2) < 1.5
    assert abs((view.created_at - before).total_seconds()) < 1.5
    done = app.wait(view.id, timeout=20)
    assert done.state is State.COMPLETED and done.started_at
    assert (done.started_at - view.scheduled_at).total_seconds() >= 0
    listed = httpx.get(f"{url}/jobs", params={"created_after": before.isoformat()}).json()
    assert view.id in [j["id"] for j in listed["items"]]  # ids carry the database's time too


@pytest.mark.parametrize("offset", SKEWS)
def test_skewed_schedulers_fire_each_tick_once_on_time(pg_redis: Backend, offset: str) -> None:
    """A scheduler three minutes off and one on time: every one-second tick fires once, at
    its time on the database's clock."""
    from sqlalchemy import select

    from conveyor.store.tables import jobs, schedule_fires

    pg_backend = pg_redis  # the schedulers' clocks are the point, not the dispatch
    app = pg_backend.app()
    _skewed(pg_backend, offset, "scheduler", "--app", "tests.apps.periodic:app")
    pg_backend.worker(command="scheduler", app="tests.apps.periodic:app")

    def ticks() -> list[tuple[object, object]]:
        query = (
            select(schedule_fires.c.tick_at, jobs.c.created_at)
            .join(jobs, jobs.c.id == schedule_fires.c.job_id)
            .where(schedule_fires.c.schedule == "tick")
            .order_by(schedule_fires.c.tick_at)
        )
        with app.client.jobs.engine.connect() as conn:
            return [(r.tick_at, r.created_at) for r in conn.execute(query)]

    wait_for(lambda: len(ticks()) >= 6, timeout=30, what="six ticks")
    rows = ticks()
    stamps = [tick for tick, _ in rows]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(stamps, stamps[1:]))  # noqa: B905
    # Each fired when its tick came on the database's clock (not three minutes off).
    assert all(0 <= (made - tick).total_seconds() < 2 for tick, made in rows), rows
