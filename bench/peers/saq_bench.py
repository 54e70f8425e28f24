"""SAQ 0.26 with its Redis queue (asyncio).

Configuration, SAQ's most favourable documented one for these workloads, the same for all
three: ``python -m saq --workers 2`` (two worker processes, one per core), each running
``concurrency=50`` job loops that wait on BLMOVE, so an idle worker takes a new job at once
with no polling (measured: 50 drains W1 and W3 faster than 100, 200 or 500, whose extra loops
and connections only cost CPU, and W3 twice as fast as the default 10); jobs enqueued with
``ttl=-1``, SAQ's documented way not to keep a finished job (its key is deleted on finish
instead of stored for 600 s; the harness reads the ledger, never a result); logging at
WARNING, the CLI's default; the default upkeep ``timers`` (none is on the dequeue path).

Quick-start (the defaults workload): ``saq bench.peers.saq_bench.quickstart_settings --workers
2``, settings naming only the queue and the functions (the default ``concurrency`` of 10), jobs
enqueued with the default ``ttl`` (a finished job kept 600 s). SAQ runs a plain function on a
thread pool ("even if they are not [async]", its README), so both kinds.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import ClassVar

from saq import Queue
from saq.types import Context, SettingsDict

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import AsyncBridge, Handler, Kind, System, Workload, script

TTL = -1  # delete a job's key when it finishes


async def noop(ctx: Context, *, t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


def noop_sync(ctx: Context, *, t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


async def sleep(ctx: Context, *, t_enq: float = 0.0) -> None:
    started = time.time()
    await asyncio.sleep(0.01)
    mark(t_enq, started)


def settings() -> SettingsDict[Context]:
    """``python -m saq bench.peers.saq_bench.settings``: SAQ calls it in each worker process,
    which always has BENCH_REDIS."""
    return {
        "queue": Queue.from_url(os.environ["BENCH_REDIS"]),
        "functions": [noop, sleep],
        "concurrency": 50,
    }


def quickstart_settings() -> SettingsDict[Context]:
    """``saq bench.peers.saq_bench.quickstart_settings``: the queue and functions, no more."""
    return {"queue": Queue.from_url(os.environ["BENCH_REDIS"]), "functions": [noop, noop_sync]}


class Saq(System):
    name: ClassVar[str] = "saq"
    label: ClassVar[str] = "SAQ"
    packages = ("saq", "redis")
    durable = "Redis"
    handlers = {"sync": "noop_sync", "async": "noop"}

    def setup(self) -> None:
        self.bridge = AsyncBridge()
        self.queue = Queue.from_url(self.servers.redis_url)
        self.bridge.run(self.queue.connect())

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        self._enqueue_many(kind, n, ttl=TTL)

    def enqueue_quickstart(self, handler: Handler, n: int) -> None:
        self._enqueue_many(self.handlers[handler], n)  # Queue.enqueue's default options

    def _enqueue_many(self, kind: Kind, n: int, **options: int) -> None:
        # SAQ has no fire-and-forget bulk enqueue (Queue.map waits for the results): run
        # enqueue concurrently, 1000 at a time; the queue itself keeps at most 20 in flight
        # (max_concurrent_ops, left at its default: 50 or 100 was no faster).
        async def chunk(size: int) -> None:
            await asyncio.gather(
                *(self.queue.enqueue(kind, t_enq=0.0, **options) for _ in range(size))
            )

        for start in range(0, n, 1000):
            self.bridge.run(chunk(min(1000, n - start)))

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        self.bridge.run(self.queue.enqueue(kind, t_enq=t_enq, ttl=TTL))

    def workers(self, workload: Workload) -> list[list[str]]:
        return [[PYTHON, "-m", "saq", "bench.peers.saq_bench.settings", "--workers", "2"]]

    def quickstart(self, handler: Handler) -> list[list[str]]:
        argv = [script("saq"), "bench.peers.saq_bench.quickstart_settings", "--workers", "2"]
        return [argv]

    def close(self) -> None:
        self.bridge.run(self.queue.disconnect())
        self.bridge.close()
