"""pgqueuer 1.x on PostgreSQL alone, through asyncpg (the driver its docs recommend and its CLI
tries first; its own benchmark puts asyncpg at about twice psycopg's rate).

Workers: two processes (one per core) each running ``pgqueuer.run(main, batch_size=100)``, the
documented programmatic twin of ``pgq run module:main --batch-size 100`` on uvloop as the CLI does
(``pgq run`` itself crashes in pgqueuer 1.6.0 with typer 0.29: its --log-level parser hands a str
where an enum is expected). Each is a ``PgQueuer`` over one dedicated asyncpg connection (the
documented set-up for a QueueManager), dequeuing 100 jobs per round trip (its tuning guide: raise the batch size for short jobs), with LISTEN/NOTIFY
waking idle workers (the default) and no concurrency limit (``concurrency_limit=0`` and no
``--max-concurrent-tasks``: every dequeued job runs at once). Schema installed with the default
durability (logged tables), as the other PostgreSQL systems are. Harness: ``Queries.enqueue``
with lists of 1000 for bulk and one job per call otherwise, over one asyncpg connection (its
driver serialises calls with an asyncio.Lock) on an AsyncBridge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import PgQueuer as PgQueuerApp
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import AsyncBridge, Kind, System, Workload

BATCH = 100


def _t_enq(job: Job) -> float:
    return float(job.payload) if job.payload else 0.0


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuerApp]:
    """The worker factory ``pgq run`` enters: one asyncpg connection from BENCH_PG."""
    connection = await asyncpg.connect(os.environ["BENCH_PG"])
    try:
        pgq = PgQueuerApp.from_asyncpg_connection(connection)

        @pgq.entrypoint("noop")
        async def noop(job: Job) -> None:
            mark(_t_enq(job), time.time())

        @pgq.entrypoint("sleep")
        async def sleep(job: Job) -> None:
            started = time.time()
            await asyncio.sleep(0.01)
            mark(_t_enq(job), started)

        yield pgq
    finally:
        await connection.close()


class PgQueuer(System):
    name: ClassVar[str] = "pgqueuer"
    label: ClassVar[str] = "pgqueuer"
    packages = ("pgqueuer", "asyncpg")
    uses = ("postgresql",)
    durable = "PostgreSQL (pgqueuer row, deleted when finished)"

    def setup(self) -> None:
        assert self.servers.pg_url
        self.bridge = AsyncBridge()
        self.connection: asyncpg.Connection = self.bridge.run(asyncpg.connect(self.servers.pg_url))
        self.queries = Queries(AsyncpgDriver(self.connection))
        self.bridge.run(self.queries.install())

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            self.bridge.run(self.queries.enqueue([kind] * size, [b"0.0"] * size, [0] * size))

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        self.bridge.run(self.queries.enqueue(kind, repr(t_enq).encode()))

    def workers(self, workload: Workload) -> list[list[str]]:
        argv = [PYTHON, "-m", "bench.peers.pgqueuer_bench", "--batch-size", str(BATCH)]
        return [argv, argv]

    def close(self) -> None:
        self.bridge.run(self.connection.close())
        self.bridge.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A pgqueuer worker, as `pgq run ...:main`.")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    args = parser.parse_args()
    uvloop.run(pgqueuer.run(main, batch_size=args.batch_size))
