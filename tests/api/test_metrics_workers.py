"""/metrics from `conveyor api --workers 2`: every scrape, whichever process answers it,
shows every process's enqueues (the counters live in the database, not in one process)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backend, WorkerProcess, wait_for

JOBS = 40
SCRAPES = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_workers(db_backend: Backend) -> Iterator[str]:
    """`python -m conveyor api --workers 2` on a free port, both processes serving."""
    port = _free_port()
    api: WorkerProcess = db_backend.worker(
        "--port", str(port), "--workers", "2", command="api", CONVEYOR_LOG_LEVEL="WARNING"
    )
    url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        if api.proc.poll() is not None:
            raise AssertionError(f"the API exited with {api.proc.returncode}:\n{api.log()}")
        workers = [p for p in psutil.Process(api.proc.pid).children() if _listens(p, port)]
        try:
            return len(workers) == 2 and httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(serving, timeout=30, what="two API processes to serve")
    yield url
    api.stop()


def _listens(process: psutil.Process, port: int) -> bool:
    """Whether ``process`` holds the listening socket (a uvicorn worker, not a helper)."""
    try:
        return any(c.laddr and c.laddr.port == port for c in process.net_connections())
    except psutil.Error:
        return False


def _counters(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The counter samples of one scrape, on a connection of its own (so scrapes are spread
    over the processes as new clients' are)."""
    response = httpx.get(f"{url}/metrics", headers={"Connection": "close"})
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        if family.type == "counter"
        for s in family.samples
    }


ADD = ("conveyor_jobs_enqueued_total", (("queue", "default"), ("type", "add")))
BATCH = ("conveyor_jobs_enqueued_total", (("queue", "other"), ("type", "add")))


def test_every_scrape_shows_every_enqueue(two_workers: str) -> None:
    url = two_workers
    for i in range(JOBS):  # each on a new connection: both processes take some
        response = httpx.post(
            f"{url}/jobs",
            json={"type": "add", "payload": {"a": i}},
            headers={"Connection": "close"},
        )
        assert response.status_code == 202, response.text
    batch = {"jobs": [{"type": "add", "payload": {"a": 1}, "queue": "other"}] * 5}
    assert httpx.post(f"{url}/jobs/batch", json=batch).status_code == 202

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        seen = _counters(url)
        return seen if seen.get(ADD) == JOBS and seen.get(BATCH) == 5 else None

    first = wait_for(settled, timeout=10, what="the enqueue counts to reach the database")
    scrapes = [_counters(url) for _ in range(SCRAPES)]
    assert all(s == first for s in scrapes), [(s.get(ADD), s.get(BATCH)) for s in scrapes]
