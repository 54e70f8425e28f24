"""arq 0.28 (Redis, asyncio).

Configuration, arq's most favourable documented one for these workloads, the same for all
three: two worker processes (``python -m arq``, one per core), each running up to
``max_jobs=200`` coroutines (measured: 100 to 1000 drain W1 and W3 alike, the workers being
CPU-bound); ``keep_result=0`` so no result key is written (the harness reads the ledger, never
a result); ``poll_delay=0.01`` instead of 0.5 s, since an arq worker finds new jobs only by
polling its sorted set (W2 start latency follows it: p50 about 7 ms at 0.01 s, 15-25 ms at
0.05 s); ``max_tries=1`` as no job here fails; arq's own logging at WARNING
(``--custom-log-dict``) like every other system, instead of two INFO lines per job.

Quick-start (the defaults workload): ``arq bench.peers.arq_bench.QuickstartSettings``, twice
(an arq worker is one process): settings naming only the functions and the Redis server, so
``max_jobs=10``, ``poll_delay=0.5`` s, results kept for an hour, INFO logging. arq runs
coroutines only (a plain function is refused at start).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from arq.connections import ArqRedis, RedisSettings, create_pool

from bench.env import PYTHON, REDIS_BASE, REDIS_DB
from bench.ledger import mark
from bench.peers.base import AsyncBridge, Handler, Kind, System, Workload, script


async def noop(ctx: dict[str, Any], t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


async def sleep(ctx: dict[str, Any], t_enq: float = 0.0) -> None:
    started = time.time()
    await asyncio.sleep(0.01)
    mark(t_enq, started)


# Workers always get BENCH_REDIS; the fallback (the same URL) only serves the harness's import.
REDIS_URL = os.environ.get("BENCH_REDIS", f"{REDIS_BASE.rstrip('/')}/{REDIS_DB}")
CHUNK = 200  # bulk enqueue: calls in flight at once
LOGGING = {  # --custom-log-dict: arq logs at WARNING, like the other systems
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq"], "level": "WARNING"}},
}


class WorkerSettings:
    """``python -m arq bench.peers.arq_bench.WorkerSettings``: the same for every workload."""

    functions = [noop, sleep]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = 200
    poll_delay = 0.01
    keep_result = 0
    max_tries = 1


class QuickstartSettings:
    """``arq bench.peers.arq_bench.QuickstartSettings``: what the quick-start sets, no more."""

    functions = [noop]
    redis_settings = RedisSettings.from_dsn(REDIS_URL)


class Arq(System):
    name: ClassVar[str] = "arq"
    label: ClassVar[str] = "arq"
    packages = ("arq", "redis")
    durable = "Redis"
    handlers = {"async": "noop"}

    def setup(self) -> None:
        self.bridge = AsyncBridge()
        self.pool: ArqRedis = self.bridge.run(
            create_pool(RedisSettings.from_dsn(self.servers.redis_url))
        )

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        # arq has no bulk enqueue: run enqueue_job concurrently, CHUNK at a time. Each call
        # holds a pooled connection for its WATCH/MULTI; 1000 at a time was no faster.
        async def chunk(size: int) -> None:
            await asyncio.gather(*(self.pool.enqueue_job(kind, 0.0) for _ in range(size)))

        for start in range(0, n, CHUNK):
            self.bridge.run(chunk(min(CHUNK, n - start)))

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        self.bridge.run(self.pool.enqueue_job(kind, t_enq))

    def workers(self, workload: Workload) -> list[list[str]]:
        argv = [
            PYTHON, "-m", "arq", "--custom-log-dict", "bench.peers.arq_bench.LOGGING",
            "bench.peers.arq_bench.WorkerSettings",
        ]
        return [argv, argv]

    def quickstart(self, handler: Handler) -> list[list[str]]:
        argv = [script("arq"), "bench.peers.arq_bench.QuickstartSettings"]
        return [argv, argv]

    def close(self) -> None:
        self.bridge.run(self.pool.aclose())
        self.bridge.close()
