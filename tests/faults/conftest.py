"""Fault injection: real processes killed and frozen, private servers stopped and restarted.

Every test checks the invariants against the ledger that the `ledger` job type writes (a
line per start and per end of each execution), not against Conveyor's own counters.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.conftest import Backend
from tests.servers import PrivatePostgres, PrivateRedis


class Ledger:
    def __init__(self, marks: Path) -> None:
        self.path = marks / "ledger"

    def lines(self) -> list[tuple[str, str, int]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            kind, job_id, attempt = line.split()
            out.append((kind, job_id, int(attempt)))
        return out

    def ends(self) -> Counter[str]:
        """Completed executions per job: more than one is a duplicate execution."""
        return Counter(job_id for kind, job_id, _ in self.lines() if kind == "end")

    def starts(self) -> Counter[str]:
        return Counter(job_id for kind, job_id, _ in self.lines() if kind == "start")


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
