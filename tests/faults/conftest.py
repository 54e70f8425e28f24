"""Fault injection: real processes killed and frozen, private servers stopped and restarted.

Every test checks the invariants against the ledger that the `ledger` job type writes (a
line as each attempt starts and one as it ends, naming the job, the attempt number and the
process), not against Conveyor's own counters.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from conveyor import Conveyor
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.conftest import Backend, WorkerProcess
from tests.servers import PrivatePostgres, PrivateRedis

Run = tuple[str, int]  # (job id, attempt)


@dataclass(frozen=True)
class Entry:
    kind: str  # "start" or "end"
    job_id: str
    attempt: int
    pid: int

    @property
    def run(self) -> Run:
        return (self.job_id, self.attempt)


class Ledger:
    def __init__(self, marks: Path) -> None:
        self.path = marks / "ledger"

    def entries(self) -> list[Entry]:
        """Complete lines only: a line being appended right now is read next time."""
        if not self.path.exists():
            return []
        *complete, _partial = self.path.read_text().split("\n")
        out = []
        for line in complete:
            kind, job_id, attempt, pid = line.split()
            out.append(Entry(kind, job_id, int(attempt), int(pid)))
        return out

    def starts(self) -> Counter[Run]:
        """Executions begun per (job, attempt): more than one runs an attempt twice."""
        return Counter(e.run for e in self.entries() if e.kind == "start")

    def ends(self) -> Counter[Run]:
        """Executions that ran to the end per (job, attempt)."""
        return Counter(e.run for e in self.entries() if e.kind == "end")

    def jobs_started(self) -> set[str]:
        return {e.job_id for e in self.entries() if e.kind == "start"}

    def jobs_ended(self) -> Counter[str]:
        """Executions that ran to the end per job, whatever the attempt."""
        return Counter(e.job_id for e in self.entries() if e.kind == "end")

    def pid(self, kind: str, run: Run) -> int:
        """The process that wrote the one ``kind`` line of ``run``."""
        (pid,) = [e.pid for e in self.entries() if e.kind == kind and e.run == run]
        return pid

    def assert_once_per_attempt(self) -> None:
        """No attempt started twice, and nothing ended that had not started."""
        starts, ends = self.starts(), self.ends()
        assert max(starts.values(), default=0) <= 1, {r: n for r, n in starts.items() if n > 1}
        assert max(ends.values(), default=0) <= 1, {r: n for r, n in ends.items() if n > 1}
        assert set(ends) <= set(starts), set(ends) - set(starts)


def all_terminal(app: Conveyor, ids: list[str]) -> bool:
    return all(app.get(i).terminal for i in ids)


def ran_in(worker_id: str | None, worker: WorkerProcess) -> bool:
    """Whether a worker id (host:pid:suffix) names this worker process."""
    return worker_id is not None and worker_id.split(":")[1] == str(worker.proc.pid)


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Ledger:
    backend: Backend = request.getfixturevalue("fault_backend")
    return Ledger(backend.marks)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.cleanup()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.cleanup()


def private_database(pg: PrivatePostgres) -> str:
    name = f"fault_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def fault_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """PostgreSQL + Redis on the shared servers (tests that stop a server use their own)."""
    backend: Backend = request.getfixturevalue("pg_redis")
    yield backend
