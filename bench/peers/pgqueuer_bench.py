"""pgqueuer 1.x on PostgreSQL alone, through asyncpg (the driver its docs recommend and its CLI
tries first; its own benchmark puts asyncpg at about twice psycopg's rate).

Workers: two processes (one per core), each ``pgqueuer.run(main, batch_size=100)`` on uvloop:
the documented programmatic twin of ``pgq run bench.peers.pgqueuer_bench:main --batch-size 100``
(``pgq run`` itself exits at start in pgqueuer 1.6.0 under typer 0.29: its --log-level parser
passes a str where setup_fancy_logger expects an enum). Each runs a ``PgQueuer`` over one
dedicated asyncpg connection (the documented set-up for a queue manager), dequeues 100 jobs per
round trip (its tuning guide: raise the batch size for short jobs), is woken by LISTEN/NOTIFY
(the default) and runs every dequeued job at once (no ``concurrency_limit``, no
``--max-concurrent-tasks``). Schema installed with the default durability (logged tables).
Harness: ``Queries.enqueue`` with lists of 1000 for bulk and one job per call otherwise, over
one asyncpg connection (its driver serialises calls with an asyncio.Lock) on an AsyncBridge.

Quick-start (the defaults workload): ``pgq run bench.peers.pgqueuer_bench:main``, twice (one
process each), with every default (batch size 10, INFO logging, uvloop when installed). As
``pgq run`` itself exits at start here (above), each process is this module with
``--quickstart``: the same two calls ``pgq run`` makes. pgqueuer 1.x runs ``async def``
entrypoints only (a plain function is refused: "Sync entrypoints are no longer supported").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import ClassVar, cast

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import PgQueuer as PgQueuerApp
from pgqueuer.adapters.cli.cli import asyncio_run
from pgqueuer.core.logconfig import LogLevel, setup_fancy_logger
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import AsyncBridge, Handler, Kind, System, Workload

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
    packages = ("pgqueuer", "asyncpg", "uvloop")
    uses = ("postgresql",)
    durable = "PostgreSQL (pgqueuer row; outcome in pgqueuer_log, written in batches)"
    records_finish = True
    handlers = {"async": "noop"}

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

    def quickstart(self, handler: Handler) -> list[list[str]]:
        argv = [PYTHON, "-m", "bench.peers.pgqueuer_bench", "--quickstart"]
        return [argv, argv]

    def quickstart_config(self, handler: Handler) -> str:
        return (
            "2 x pgq run bench.peers.pgqueuer_bench:main (as bench.peers.pgqueuer_bench "
            "--quickstart: pgq run 1.6.0 exits at start under typer 0.29)"
        )

    def drained(self, n: int) -> float | None:
        # Workers buffer outcomes (100 at a time or every ~0.1 s) and write them with the
        # DELETE of the job rows: a job is finished once its "successful" log row exists.
        log = self.queries.qbe.settings.queue_table_log
        (row,) = self.bridge.run(self.queries.driver.fetch(
            f"SELECT count(*) AS done, max(created) AS last FROM {log} WHERE status = 'successful'"
        ))
        done, last = cast(int, row["done"]), cast(datetime | None, row["last"])
        return last.timestamp() if done >= n and last is not None else None

    def close(self) -> None:
        self.bridge.run(self.connection.close())
        self.bridge.close()


def run_quickstart() -> None:
    """What ``pgq run bench.peers.pgqueuer_bench:main`` does with every option at its default."""
    setup_fancy_logger(LogLevel.INFO)
    asyncio_run(pgqueuer.run(main))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A pgqueuer worker, as `pgq run ...:main`.")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--quickstart", action="store_true", help="pgq run's defaults")
    args = parser.parse_args()
    if args.quickstart:
        run_quickstart()
    else:
        uvloop.run(pgqueuer.run(main, batch_size=args.batch_size))
