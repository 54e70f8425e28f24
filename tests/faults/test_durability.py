"""Accepted means durable: a 2xx from a real `conveyor api` process, or `app.enqueue` returning,
survives a SIGKILL of that process and a PostgreSQL crash right after; a refused request
(4xx, or 503 while the database is down) writes nothing.

Each test has its own database on a private cluster (tests/faults/conftest.py), so the test
can crash the cluster (`pg_ctl stop -m immediate`) and count every row in it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import ROOT, Backend, libpq_url, wait_for
from tests.faults.conftest import private_database
from tests.servers import PrivatePostgres, _free_port

#: Concurrent HTTP clients in the crash test, and how many answers to wait for before it.
CLIENTS = 8
ACCEPTED_BEFORE_CRASH = 300
#: Crashes per test: each loses unflushed commits with some chance, if any were unflushed.
CRASHES = 3
#: How long the API must be seen accepting after a refusal before "nothing was written".
QUIET_S = 2.0


@dataclass
class Api:
    """A `python -m conveyor api` process on a free port."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def crash_backend(private_pg: PrivatePostgres, tmp_path: Path) -> Iterator[Backend]:
    """A fresh database on the private cluster (PostgreSQL dispatch: Redis plays no part)."""
    url = private_database(private_pg)
    b = Backend("private-postgres", url, None, f"dur{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield b
    finally:
        b.close()
        private_pg.start()  # up again for the next test, even if this one failed mid-crash


@pytest.fixture
def api(crash_backend: Backend) -> Iterator[Callable[..., Api]]:
    started: list[Api] = []

    def start(**env: str) -> Api:
        port = _free_port()
        log_path = crash_backend.tmp / f"api-{port}.log"
        argv = [sys.executable, "-m", "conveyor", "api", "--app", "tests.apps.jobs:app"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*argv, "--port", str(port)],
                env=crash_backend.env(**env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Api(proc, f"http://127.0.0.1:{port}", log_path)
        started.append(server)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the API exited with {proc.returncode}:\n{server.log()}")
            try:
                return httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=30, what="the API to answer /readyz")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait()


def _rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def _jobs(url: str) -> dict[str, dict[str, Any]]:
    """Every job row in the database: id -> payload."""
    return {str(i): p for i, p in _rows(url, "SELECT id, payload FROM conveyor_jobs")}


def _crash(pg: PrivatePostgres, *, first: int | None = None) -> None:
    """SIGKILL process ``first``, then crash PostgreSQL as ``pg_ctl stop -m immediate`` does
    (SIGQUIT to the postmaster), sent at once instead of after pg_ctl has started: a commit
    not yet in the WAL a millisecond before is lost. Returns once the postmaster is gone."""
    postmaster_pid = int((pg.data / "postmaster.pid").read_text().split()[0])
    if first is not None:
        os.kill(first, signal.SIGKILL)
    os.kill(postmaster_pid, signal.SIGQUIT)
    wait_for(
        lambda: not Path(f"/proc/{postmaster_pid}").exists() and not pg.running(),
        timeout=30,
        what="PostgreSQL to stop",
    )


# -- a 2xx survives the crash of everything --------------------------------------------------


@dataclass
class Answers:
    """What the clients were told (job id -> the payload value sent). The client whose
    answer makes ``crash_at`` crashes the API and the database at once, from its thread."""

    crash: Callable[[], None]
    crash_at: int
    accepted: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0
    other: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    killed: threading.Event = field(default_factory=threading.Event)

    def record(self, ids: list[str], sent: list[int]) -> None:
        with self.lock:
            self.accepted.update(zip(ids, sent, strict=True))
            if len(self.accepted) >= self.crash_at and not self.killed.is_set():
                self.crash()  # mid-stream: other answers are in flight
                self.killed.set()


def _post_until_it_fails(url: str, kind: str, numbers: Iterator[int], answers: Answers) -> None:
    """POST one kind of enqueue (plain, keyed or batch of 5) again and again; stop at the
    first request that gets no answer (the API was killed)."""
    with httpx.Client(base_url=url, timeout=10) as http:
        while True:
            sent = [next(numbers) for _ in range(5 if kind == "batch" else 1)]
            jobs = [{"type": "add", "payload": {"a": n}} for n in sent]
            try:
                if kind == "batch":
                    response = http.post("/jobs/batch", json={"jobs": jobs})
                elif kind == "keyed":
                    key = {"Idempotency-Key": f"k{sent[0]}"}
                    response = http.post("/jobs", json=jobs[0], headers=key)
                else:
                    response = http.post("/jobs", json=jobs[0])
            except httpx.TransportError:
                with answers.lock:
                    answers.unanswered += len(sent)
                return
            if response.status_code not in (200, 202):
                with answers.lock:
                    answers.other.append((response.status_code, response.text[:300]))
                return
            body = response.json()
            answers.record(
                [j["id"] for j in body["jobs"]] if kind == "batch" else [body["id"]], sent
            )


def _post_until_the_crash(server: Api, pg: PrivatePostgres, numbers: Iterator[int]) -> Answers:
    """Clients POST at ``server`` until ``ACCEPTED_BEFORE_CRASH`` jobs are answered, when the
    API and then PostgreSQL are crashed; returns what the clients were told."""
    answers = Answers(lambda: _crash(pg, first=server.proc.pid), ACCEPTED_BEFORE_CRASH)
    kinds = ["plain"] * 5 + ["keyed"] * 2 + ["batch"]
    assert len(kinds) == CLIENTS
    clients = [
        threading.Thread(target=_post_until_it_fails, args=(server.url, k, numbers, answers))
        for k in kinds
    ]
    for client in clients:
        client.start()
    wait_for(
        lambda: answers.killed.is_set() or answers.other,
        timeout=30,
        what=f"{ACCEPTED_BEFORE_CRASH} accepted jobs, then the crash",
    )
    for client in clients:
        client.join(30)
    assert answers.other == [], f"refused while up: {answers.other[:3]}\n{server.log()}"
    return answers


def test_every_2xx_survives_sigkill_of_the_api_and_a_postgres_crash(
    api: Callable[..., Api], crash_backend: Backend, private_pg: PrivatePostgres
) -> None:
    numbers = itertools.count()  # next() on it is atomic under the GIL: each value sent once
    answered: dict[str, int] = {}
    for crash in range(1, CRASHES + 1):
        answers = _post_until_the_crash(api(), private_pg, numbers)
        answered.update(answers.accepted)  # each answer was sent before the SIGKILL: it counts
        private_pg.start()  # crash recovery replays the WAL
        stored = _jobs(crash_backend.database_url)
        print(
            f"\ncrash {crash}: {len(answers.accepted)} jobs answered 2xx, "
            f"{answers.unanswered} requests unanswered; {len(stored)} rows after recovery"
        )
        lost = [i for i in answered if i not in stored]
        assert lost == [], f"crash {crash}: {len(lost)} accepted job(s) lost, e.g. {lost[:3]}"
        wrong = {i: stored[i] for i, n in answered.items() if stored[i]["a"] != n}
        assert wrong == {}, "stored under another id"


def _enqueue_until_the_crash(b: Backend, pg: PrivatePostgres, first: int) -> dict[str, int]:
    """A process enqueues from 4 threads, printing each id once ``enqueue`` returned; it and
    then PostgreSQL are crashed after ``ACCEPTED_BEFORE_CRASH`` lines. Returns id -> value."""
    code = """
import sys, threading
from tests.apps.jobs import app
lock = threading.Lock()
def enqueue(first):
    for n in range(first, first + 1_000_000):
        job_id = app.enqueue("add", {"a": n}).id
        with lock:
            print(job_id, n, flush=True)
first = int(sys.argv[1])
for k in range(4):
    threading.Thread(target=enqueue, args=(first + k * 1_000_000,)).start()
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(first)],
        env=b.env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    returned: dict[str, int] = {}
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            job_id, n = line.split()
            returned[job_id] = int(n)
            if len(returned) >= ACCEPTED_BEFORE_CRASH:
                break
    finally:
        _crash(pg, first=proc.pid)  # right after an enqueue returned
        stderr = proc.stderr.read() if proc.stderr else ""
        proc.wait()
    assert len(returned) >= ACCEPTED_BEFORE_CRASH, stderr[-3000:]
    return returned


def test_enqueue_that_returned_survives_a_kill_and_a_postgres_crash(
    crash_backend: Backend, private_pg: PrivatePostgres
) -> None:
    returned: dict[str, int] = {}
    for crash in range(1, CRASHES + 1):
        returned.update(_enqueue_until_the_crash(crash_backend, private_pg, crash * 10_000_000))
        private_pg.start()
        stored = _jobs(crash_backend.database_url)
        print(f"\ncrash {crash}: {len(returned)} enqueue() calls returned; {len(stored)} rows")
        lost = [i for i in returned if i not in stored]
        assert lost == [], f"crash {crash}: {len(lost)} enqueued job(s) lost, e.g. {lost[:3]}"
        wrong = {i: stored[i] for i, n in returned.items() if stored[i]["a"] != n}
        assert wrong == {}, "stored under another id"


# -- a refused request writes nothing ---------------------------------------------------------


def _refused(http: httpx.Client, body: object, key: str | None, path: str = "/jobs") -> int:
    headers = {"Idempotency-Key": key} if key else {}
    response = http.post(path, json=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.json()["error"]["code"], response.text[:300]
    return response.status_code


def _accepting_for(http: httpx.Client, seconds: float) -> set[str]:
    """POST jobs until the API has accepted them for ``seconds``; their ids. After a refusal,
    this proves the API live and writing for that long: a refused request it had kept to
    write later (an outbox, a retry) would be written by then."""
    accepted: dict[str, float] = {}

    def long_enough() -> bool:
        response = http.post("/jobs", json={"type": "add", "payload": {"a": -1}})
        if response.status_code == 202:
            accepted[response.json()["id"]] = time.monotonic()
        return bool(accepted) and max(accepted.values()) - min(accepted.values()) >= seconds

    wait_for(long_enough, timeout=seconds + 20, interval=0.1, what="the API to accept jobs")
    return set(accepted)


def test_a_refused_request_writes_nothing(api: Callable[..., Api], crash_backend: Backend) -> None:
    server = api(CONVEYOR_MAX_PAYLOAD_BYTES="1000", CONVEYOR_MAX_BODY_BYTES="20000")
    http = httpx.Client(base_url=server.url, timeout=10)
    live = http.post("/jobs", json={"type": "add", "payload": {"a": 1}})
    assert live.status_code == 202  # the API writes: the refusals below are not for nothing
    add = {"type": "add", "payload": {"a": 2}}
    cases: dict[str, tuple[object, str]] = {
        "bad payload": ({"type": "add", "payload": {"a": "two"}}, "/jobs"),
        "missing field": ({"type": "add", "payload": {}}, "/jobs"),
        "unknown type": ({"type": "no_such_type", "payload": {"a": 2}}, "/jobs"),
        "payload too large": ({"type": "value_echo", "payload": {"value": "x" * 2000}}, "/jobs"),
        "body too large": ({"type": "value_echo", "payload": {"value": "x" * 30000}}, "/jobs"),
        "bad queue name": ({**add, "queue": "no spaces allowed"}, "/jobs"),
        "bad timeout": ({**add, "timeout": 0}, "/jobs"),
        "unstorable text": ({"type": "value_echo", "payload": {"value": "nul\u0000"}}, "/jobs"),
        "one bad job in a batch": ({"jobs": [add, add, {**add, "queue": "bad name"}]}, "/jobs/batch"),
    }  # fmt: skip
    statuses: dict[str, list[int]] = {}
    keys: list[str] = []
    for name, (body, path) in cases.items():
        key = f"refused-{uuid.uuid4().hex}" if path == "/jobs" else None
        keys += [key] if key else []
        # without a key (the grouped write), then with one (written alone)
        statuses[name] = [_refused(http, body, None, path), _refused(http, body, key, path)]
    print(f"\nrefused: {statuses}")
    assert statuses["payload too large"] == [413, 413]
    assert statuses["body too large"] == [413, 413]
    accepted = _accepting_for(http, QUIET_S)  # still live, and what it accepts it writes
    stored = _jobs(crash_backend.database_url)
    written = {i: p for i, p in stored.items() if i not in {live.json()["id"], *accepted}}
    assert written == {}, f"refused requests wrote {written}"
    keyed = _rows(
        crash_backend.database_url,
        "SELECT count(*) FROM conveyor_jobs WHERE idempotency_key = ANY(%s)",
        keys,
    )
    assert keyed == [(0,)]
    http.close()


def test_a_503_while_the_database_is_down_writes_nothing(
    api: Callable[..., Api], crash_backend: Backend, private_pg: PrivatePostgres
) -> None:
    server = api()
    http = httpx.Client(base_url=server.url, timeout=10)
    live = http.post("/jobs", json={"type": "add", "payload": {"a": 1}})
    assert live.status_code == 202
    private_pg.stop("fast")
    job = {"type": "add", "payload": {"a": 2}}
    requests = [  # grouped, keyed (written alone), batch
        ("/jobs", job, {}),
        ("/jobs", job, {"Idempotency-Key": f"down-{uuid.uuid4().hex}"}),
        ("/jobs/batch", {"jobs": [job]}, {}),
    ]
    answers = []
    try:
        for path, body, headers in requests:
            started = time.monotonic()
            down = http.post(path, json=body, headers=headers)
            answers.append(
                (down.status_code, down.headers.get("Retry-After"), time.monotonic() - started)
            )
            assert down.json()["error"]["code"] == "database_unavailable", down.text[:300]
    finally:
        private_pg.start()
    print(f"\nwhile the database was down: {answers}")
    assert [(status, retry) for status, retry, _ in answers] == [(503, "5")] * 3
    assert all(seconds < 5 for _, _, seconds in answers)
    accepted = _accepting_for(http, QUIET_S)  # back, and writing again
    stored = _jobs(crash_backend.database_url)
    written = {i: p for i, p in stored.items() if i not in {live.json()["id"], *accepted}}
    assert written == {}, f"requests answered 503 wrote {written}"
    http.close()
