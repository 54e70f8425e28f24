"""procrastinate 3.x on PostgreSQL alone (PsycopgConnector, psycopg 3 async).

Workers: two ``procrastinate worker`` processes (one per core), each with ``--concurrency=100``
async jobs in flight, LISTEN/NOTIFY on (the default) so an idle worker wakes as soon as a job is
inserted, and ``--delete-jobs=always`` (a finished job's row is deleted rather than kept, the
documented way to keep the jobs table small). A worker fetches one job per query, one query at a
time, so concurrency only overlaps running and finishing jobs with the next fetch: 10, 50 and
100 measured alike, 100 never worse; a larger psycopg pool (8 instead of the default 4) and
``--delete-jobs=never`` did not help either. Harness: ``Task.batch_defer`` in chunks of 1000 for
bulk, ``Task.defer`` (the sync connector, over a thread-safe psycopg ConnectionPool) for one job.

Quick-start (the defaults workload): ``procrastinate --app=bench.peers.procrastinate_bench.app
worker``, twice (one process each): the default concurrency of 1, finished jobs kept, the
default log level. procrastinate runs ``async def`` tasks on its loop and plain ``def`` tasks
in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any, ClassVar

from procrastinate import App, PsycopgConnector
from procrastinate.tasks import Task
from procrastinate.types import JSONDict

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import Handler, Kind, System, Workload, script

CONCURRENCY = 100

# Worker processes read the database from BENCH_PG; the harness swaps in its own connector.
app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PG", "")))


@app.task(name="noop")
async def noop(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


@app.task(name="noop_sync")
def noop_sync(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


@app.task(name="sleep")
async def sleep(t_enq: float = 0.0) -> None:
    started = time.time()
    await asyncio.sleep(0.01)
    mark(t_enq, started)


TASKS: dict[str, Task[..., Any, ...]] = {"noop": noop, "sleep": sleep, "noop_sync": noop_sync}


class Procrastinate(System):
    name: ClassVar[str] = "procrastinate"
    label: ClassVar[str] = "procrastinate"
    packages = ("procrastinate", "psycopg", "psycopg-pool")
    uses = ("postgresql",)
    durable = "PostgreSQL (procrastinate_jobs row, deleted when finished)"
    handlers = {"sync": "noop_sync", "async": "noop"}

    def setup(self) -> None:
        assert self.servers.pg_url
        self._stack = contextlib.ExitStack()
        connector = PsycopgConnector(conninfo=self.servers.pg_url, min_size=1, max_size=4)
        self._stack.enter_context(app.replace_connector(connector))
        app.open()
        self._stack.callback(app.close)
        app.schema_manager.apply_schema()

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        args: JSONDict = {"t_enq": 0.0}
        for start in range(0, n, 1000):
            TASKS[kind].batch_defer(*[args] * min(1000, n - start))

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        TASKS[kind].defer(t_enq=t_enq)

    def workers(self, workload: Workload) -> list[list[str]]:
        argv = [
            PYTHON, "-m", "procrastinate", "--app=bench.peers.procrastinate_bench.app",
            "--log-level=warning", "worker", f"--concurrency={CONCURRENCY}",
            "--delete-jobs=always",
        ]
        return [argv, argv]

    def quickstart(self, handler: Handler) -> list[list[str]]:
        argv = [script("procrastinate"), "--app=bench.peers.procrastinate_bench.app", "worker"]
        return [argv, argv]

    def close(self) -> None:
        self._stack.close()
