"""Fixtures: real PostgreSQL and Redis (started privately when not reachable), one
backend per parametrisation, and worker processes started the way users start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from conveyor import Conveyor
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.apps import jobs as test_jobs
from tests.servers import ensure_postgres, ensure_redis

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["postgres+redis", "postgres", "sqlite"]
FAST = {
    "CONVEYOR_LEASE_SECONDS": "3",
    "CONVEYOR_HEARTBEAT_SECONDS": "0.5",
    "CONVEYOR_RECONCILE_SECONDS": "0.5",
    "CONVEYOR_GRACE_SECONDS": "5",
    "CONVEYOR_PROGRESS_FLUSH_SECONDS": "0.1",
}


def wait_for(
    predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll until ``predicate()`` is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_serving(app: Conveyor, count: int = 1, timeout: float = 30.0) -> None:
    """Wait until ``count`` workers have registered: timings measured after it do not
    include a worker process starting (seconds on a loaded machine)."""
    workers = app.services.workers

    def serving() -> bool:
        since = app.client.clock.now() - timedelta(seconds=10)
        return len(workers.alive(since)) >= count

    wait_for(serving, timeout=timeout, what=f"{count} worker(s) to register")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    admin_url = ensure_postgres()
    name = f"conveyor_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server() -> str:
    return ensure_redis()


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit in {timeout} s:\n{self.log()}") from None

    def log(self) -> str:
        """The whole log (workers write a line per job: what a test looks for may be early)."""
        return self.log_path.read_text(errors="replace")


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str | None
    prefix: str
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    apps: list[Conveyor] = field(default_factory=list)

    @property
    def marks(self) -> Path:
        path = self.tmp / "marks"
        path.mkdir(exist_ok=True)
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(FAST)
        env.update(
            CONVEYOR_DATABASE_URL=self.database_url,
            CONVEYOR_REDIS_PREFIX=self.prefix,
            CONVEYOR_TEST_MARKS=str(self.marks),
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        if self.redis_url:
            env["CONVEYOR_REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        env.update(extra)
        return env

    def settings(self, **overrides: Any) -> Settings:
        values = {
            k.removeprefix("CONVEYOR_").lower(): v
            for k, v in self.env().items()
            if k.startswith("CONVEYOR_") and k != "CONVEYOR_TEST_MARKS"
        }
        values.update(overrides)
        return Settings(**values)

    def app(self, **overrides: Any) -> Conveyor:
        """A client app with the test job types, talking to this backend."""
        app = Conveyor(self.settings(**overrides))
        app.registry = test_jobs.app.registry
        self.apps.append(app)
        return app

    def worker(
        self, *args: str, command: str = "worker", app: str = "tests.apps.jobs:app", **env: str
    ) -> WorkerProcess:
        log_path = self.tmp / f"{command}-{len(self.workers)}.log"
        argv = [sys.executable, "-m", "conveyor", command, "--app", app]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*argv, *args], env=self.env(**env), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(proc, log_path)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
        for app in self.apps:
            app.close()


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg itself takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _truncate(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        c.execute(
            "TRUNCATE conveyor_attempts, conveyor_jobs, conveyor_workers, conveyor_counters,"
            " conveyor_schedule_fires, conveyor_schedules, conveyor_leases, conveyor_minutes"
        )


def _drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend in turn: PostgreSQL + Redis, PostgreSQL alone, SQLite alone."""
    yield from _backend(request.param, request, tmp_path)


@pytest.fixture(params=["postgres", "sqlite"])
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """PostgreSQL and SQLite, with database dispatch: for what does not involve Redis."""
    yield from _backend(request.param, request, tmp_path)


@pytest.fixture
def pg_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgres+redis", request, tmp_path)


@pytest.fixture
def sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("sqlite", request, tmp_path)


def _backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    prefix = f"ct{uuid.uuid4().hex[:10]}"
    redis_url = None
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'conveyor.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    else:
        url = request.getfixturevalue("pg_database")
        _truncate(url)
        if name == "postgres+redis":
            redis_url = request.getfixturevalue("redis_server")
    b = Backend(name, url, redis_url, prefix, tmp_path)
    try:
        yield b
    finally:
        b.close()
        if redis_url:
            _drop_prefix(redis_url, prefix)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Find (or start) the servers before any test, and fail the run loudly without them."""
    pg, rd = ensure_postgres(), ensure_redis()
    print(f"\nconveyor tests: PostgreSQL {pg}, Redis {rd}")
