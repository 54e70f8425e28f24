"""Conveyor, on PostgreSQL + Redis, on PostgreSQL alone and on SQLite.

Its quick-start (the defaults workload) is ``conveyor worker --app MODULE:app --processes 2``
and nothing else: the default concurrency and log level, jobs declared with a bare
``@app.job``, a plain ``def`` no-op (run on the worker's threads) and an ``async def`` one.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from sqlalchemy import func, select

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import Handler, Kind, System, Workload, script
from conveyor import Context, Conveyor
from conveyor.client import EnqueueRequest
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from conveyor.store.tables import jobs

app = Conveyor()


@app.job(retries=0)
async def noop(ctx: Context, t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


@app.job(retries=0)
async def sleep(ctx: Context, t_enq: float = 0.0) -> None:
    started = time.time()
    await asyncio.sleep(0.01)
    mark(t_enq, started)


@app.job
def noop_sync(ctx: Context, t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


@app.job
async def noop_async(ctx: Context, t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


class ConveyorPgRedis(System):
    name: ClassVar[str] = "conveyor"
    label: ClassVar[str] = "Conveyor (PostgreSQL + Redis)"
    packages = ("conveyor", "sqlalchemy", "psycopg", "redis")
    uses = ("postgresql", "redis")
    durable = "PostgreSQL (every state change and attempt committed)"
    records_finish = True
    handlers = {"sync": "noop_sync", "async": "noop_async"}
    redis = True
    sqlite = False

    def setup(self) -> None:
        if self.sqlite:
            self.database_url = f"sqlite:///{self.servers.tmp / 'conveyor.db'}"
            (self.servers.tmp / "conveyor.db").unlink(missing_ok=True)
        else:
            assert self.servers.pg_url
            self.database_url = self.servers.pg_url
        self.engine = make_engine(self.database_url)
        upgrade(self.engine)
        self.settings = Settings(
            database_url=self.database_url,
            redis_url=self.servers.redis_url if self.redis else None,
            redis_prefix="bench",
        )
        self.app = Conveyor(self.settings)
        self.app.registry = app.registry

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        for start in range(0, n, 1000):
            self.app.enqueue_many([EnqueueRequest(kind, {})] * min(1000, n - start))

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        self.app.enqueue(kind, {"t_enq": t_enq})

    def workers(self, workload: Workload) -> list[list[str]]:
        # Two processes, one per core. 2,000 jobs in flight each for no-op jobs, so every
        # claim takes the most one claim may (1,000): fewer, larger round trips (W1 on 30,000
        # jobs in one tuning run, median of 3: 22,533 jobs/s at 200 in flight, 23,828 at
        # 1,000 with claims of 200, 29,628 at 2,000 with claims of 1,000). For 10 ms sleeps,
        # 1,000: a slot freed while the next claim is on its way sits idle, and more slots
        # cover that (W3 on 30,000 jobs: 16,106 jobs/s at 200, 20,745 at 1,000).
        return [
            [
                PYTHON,
                "-m",
                "conveyor",
                "--log-level",
                "WARNING",
                "worker",
                "--app",
                "bench.peers.conveyor_bench:app",
                "--processes",
                "2",
                "--concurrency",
                str(1000 if workload == "io" else 2000),
            ]
        ]

    def quickstart(self, handler: Handler) -> list[list[str]]:
        # The same command for both kinds: the worker runs each job as its handler is written.
        return [
            [
                script("conveyor"),
                "worker",
                "--app",
                "bench.peers.conveyor_bench:app",
                "--processes",
                "2",
            ]
        ]

    def worker_env(self) -> dict[str, str]:
        env = {"CONVEYOR_DATABASE_URL": self.database_url, "CONVEYOR_REDIS_PREFIX": "bench"}
        if self.redis:
            env["CONVEYOR_REDIS_URL"] = self.servers.redis_url
        return env

    def drained(self, n: int) -> float | None:
        with self.engine.connect() as conn:
            done, last = conn.execute(
                select(func.count(), func.max(jobs.c.finished_at)).where(
                    jobs.c.state == "completed"
                )
            ).one()
        return last.timestamp() if done >= n and last is not None else None

    def close(self) -> None:
        self.app.close()
        self.engine.dispose()


class ConveyorPg(ConveyorPgRedis):
    name = "conveyor-pg"
    label = "Conveyor (PostgreSQL alone)"
    packages = ("conveyor", "sqlalchemy", "psycopg")
    uses = ("postgresql",)
    redis = False


class ConveyorSqlite(ConveyorPgRedis):
    name = "conveyor-sqlite"
    label = "Conveyor (SQLite)"
    packages = ("conveyor", "sqlalchemy")
    uses = ()
    durable = "SQLite in WAL mode (every state change and attempt committed)"
    redis = False
    sqlite = True
