"""GET /jobs/{id}/events from a real `conveyor api` process, fed by a real worker."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.jobs import app as jobs_app
from tests.conftest import ROOT, Backend, wait_for

STAGES = list(jobs_app.registry.get("staged").stages)
LIFECYCLE = ["scheduled", "queued", "running", "completed"]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Frame:
    """One SSE frame: an event (id, event, data) or only comments / a retry hint."""

    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    at: float = 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgres+redis"])
def sse_backend(request: pytest.FixtureRequest) -> Backend:
    """SQLite (streams poll) and PostgreSQL + Redis (streams are woken by pub/sub)."""
    name = "sqlite_backend" if request.param == "sqlite" else "pg_redis"
    backend: Backend = request.getfixturevalue(name)
    return backend


@pytest.fixture
def serve(sse_backend: Backend) -> Iterator[Callable[..., Server]]:
    """Start `python -m conveyor api` on a free port with the backend's environment."""
    servers: list[Server] = []

    def start(**env: str) -> Server:
        port = _free_port()
        log_path = sse_backend.tmp / f"api-{port}.log"
        argv = [sys.executable, "-m", "conveyor", "api", "--app", "tests.apps.jobs:app"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*argv, "--port", str(port)],
                env=sse_backend.env(**env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(proc, f"http://127.0.0.1:{port}", log_path)
        servers.append(server)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the API exited with {proc.returncode}:\n{server.log()}")
            try:
                return httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=20, what="the API to answer /healthz")
        return server

    yield start
    for server in servers:
        server.stop()


def frames(response: httpx.Response, deadline: float) -> Iterator[Frame]:
    """Parse a text/event-stream body; fail if it runs past ``deadline`` (monotonic)."""
    frame = Frame()
    data: list[str] = []
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "the event stream did not end in time"
        if line == "":
            if data:
                frame.data = json.loads("\n".join(data))
            if frame.data is not None or frame.comments or frame.retry is not None:
                frame.at = time.monotonic()
                yield frame
            frame, data = Frame(), []
        elif line.startswith(":"):
            frame.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "id":
                frame.id = int(value)
            elif name == "event":
                frame.event = value
            elif name == "retry":
                frame.retry = int(value)


def events(
    http: httpx.Client,
    job_id: str,
    *,
    last_event_id: int | str | None = None,
    until: Callable[[Frame], bool] = lambda f: False,
    seconds: float = 25,
) -> list[Frame]:
    """The events of one stream, until it ends by itself or ``until`` says stop."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    received: list[Frame] = []
    deadline = time.monotonic() + seconds
    with http.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for frame in frames(response, deadline):
            if frame.event is None:
                continue
            received.append(frame)
            if until(frame):
                break
    return received


def in_order(seen: list[str], order: list[str]) -> bool:
    """``seen`` (consecutive repeats collapsed) is a subsequence of ``order``."""
    collapsed = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    positions = [order.index(s) for s in collapsed]
    return positions == sorted(set(positions))


def test_events_follow_a_job_from_its_current_state_to_completion(
    sse_backend: Backend, serve: Callable[..., Server]
) -> None:
    server = serve()
    sse_backend.worker()
    with httpx.Client(base_url=server.url, timeout=20) as http:
        # delayed a little, so that the state at the moment of connecting is certain
        body = {"type": "staged", "payload": {"pause": 0.3}, "delay": 1}
        job_id = http.post("/jobs", json=body).json()["id"]
        now = http.get(f"/jobs/{job_id}").json()
        received = events(http, job_id)

    first = received[0]
    assert first.event == "state" and first.data is not None
    assert first.data["id"] == job_id and first.data["state"] == now["state"] == "scheduled"
    assert first.data["attempt"] == 0 and first.data["progress"] is None
    ids = [f.id for f in received]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids)), ids  # type: ignore[type-var]

    data = [f.data for f in received if f.data is not None]
    assert len(data) == len(received)
    states = [d["state"] for d in data]
    assert in_order(states, LIFECYCLE) and "running" in states, states
    progress = [f.data["progress"] for f in received if f.event == "progress" and f.data]
    assert len(progress) >= 3 and progress == sorted(set(progress)), progress  # rising
    every = [d["progress"] for d in data if d["progress"] is not None]
    assert every == sorted(every), every
    stages = [d["stage"] for d in data if d["stage"] is not None]
    assert in_order(stages, STAGES) and len(set(stages)) >= 3, stages
    assert {d["message"] for d in data} >= {"almost"}

    last = received[-1]
    assert last.event == "state" and last.data is not None
    assert last.data["state"] == "completed" and last.data["progress"] == 100.0
    assert last.data["result"] == {"done": "yes"} and last.data["error"] is None
    assert states.count("completed") == 1  # the stream ended right after it


def test_a_reconnect_with_last_event_id_repeats_nothing(
    sse_backend: Backend, serve: Callable[..., Server]
) -> None:
    server = serve()
    sse_backend.worker()
    with httpx.Client(base_url=server.url, timeout=20) as http:
        job_id = http.post("/jobs", json={"type": "staged", "payload": {"pause": 0.3}}).json()["id"]
        before = events(http, job_id, until=lambda f: (f.data or {}).get("stage") == "parsing")
        mid = before[-1]
        assert mid.id is not None and mid.data is not None and mid.data["stage"] == "parsing"
        assert mid.data["state"] == "running"

        after = events(http, job_id, last_event_id=mid.id)
        assert after, "the resumed stream sent nothing"
        assert all(f.id is not None and f.id > mid.id for f in after), ([f.id for f in after], mid)
        resumed = [f.data for f in after if f.data]
        assert "crawling" not in [d["stage"] for d in resumed]  # nothing from before mid
        assert resumed[-1]["state"] == "completed"
        assert in_order([d["stage"] for d in resumed if d["stage"]], STAGES)

        # reconnecting after the end: the final state once more, then the stream closes
        final = after[-1]
        again = events(http, job_id, last_event_id=final.id, seconds=10)
        assert [(f.event, f.id, (f.data or {}).get("state")) for f in again] == [
            ("state", final.id, "completed")
        ]
        # a stale or garbled Last-Event-ID is no worse than none
        garbled = events(http, job_id, last_event_id="not-a-number", seconds=10)
        assert garbled[-1].data is not None and garbled[-1].data["state"] == "completed"


def test_a_quiet_stream_sends_keep_alive_comments(
    sse_backend: Backend, serve: Callable[..., Server]
) -> None:
    server = serve(CONVEYOR_SSE_HEARTBEAT_SECONDS="0.5")
    sse_backend.worker()
    with httpx.Client(base_url=server.url, timeout=20) as http:
        job_id = http.post("/jobs", json={"type": "sleeper", "payload": {"seconds": 60}}).json()[
            "id"
        ]
        running_at = None
        keep_alive_at = None
        deadline = time.monotonic() + 20
        with http.stream("GET", f"/jobs/{job_id}/events") as response:
            for frame in frames(response, deadline):
                if frame.data and frame.data["state"] == "running":
                    running_at = frame.at
                elif running_at is not None and "keep-alive" in frame.comments:
                    keep_alive_at = frame.at
                    break
        assert running_at is not None and keep_alive_at is not None
        assert 0.3 <= keep_alive_at - running_at <= 3.0, keep_alive_at - running_at
        assert http.get(f"/jobs/{job_id}").json()["state"] == "running"  # still quiet
        assert http.get("/healthz").status_code == 200  # the closed stream hurt nothing
