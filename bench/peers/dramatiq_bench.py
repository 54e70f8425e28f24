"""Dramatiq 2.x with the RedisBroker, in its favourable documented setup for short tasks.

The default middleware (AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines,
Retries; Prometheus is no default since 2.0), no result backend, ``dramatiq -p 2`` (one process
per core) with its default 8 threads for no-op jobs and 64 for the io workload (10 ms
``time.sleep``). Two documented environment variables: ``dramatiq_queue_prefetch=256``, since
with the default (2 x threads) the consumer sleeps whenever that window is in flight, which
halved W1; ``dramatiq_worker_timeout=5`` (ms, default 1000), the longest an idle consumer sleeps
between polls of Redis (it has no blocking fetch), so W2 does not measure a 1 s poll backoff.

Quick-start (the defaults workload): ``dramatiq bench.peers.dramatiq_bench``, every default
(one process per CPU, 8 threads each, prefetch and poll timeout untouched). Async actors need
the ``AsyncIO`` middleware on the broker (Dramatiq's docs); so that the sync run and the tuned
workloads stay without it, the ``async def`` no-op is declared on a second broker that has it,
``async_broker``, run as ``dramatiq bench.peers.dramatiq_bench:async_broker``.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import Handler, Kind, System, Workload, script

QUEUE = "bench"
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")

# Workers import this module (``dramatiq bench.peers.dramatiq_bench``) and run on the broker
# set here; actors bind to the broker current when they are declared.
dramatiq.set_broker(RedisBroker(url=REDIS_URL))
async_broker = RedisBroker(url=REDIS_URL)  # the quick-start of an async def actor
async_broker.add_middleware(AsyncIO())


@dramatiq.actor(queue_name=QUEUE)
def noop(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


@dramatiq.actor(queue_name=QUEUE)
def sleep(t_enq: float = 0.0) -> None:
    started = time.time()
    time.sleep(0.01)
    mark(t_enq, started)


@dramatiq.actor(queue_name=QUEUE, broker=async_broker)
async def noop_async(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


ACTORS: dict[Kind, dramatiq.Actor[Any, Any]] = {
    "noop": noop,
    "sleep": sleep,
    "noop_async": noop_async,
}


class DramatiqRedis(System):
    name: ClassVar[str] = "dramatiq"
    label: ClassVar[str] = "Dramatiq (Redis)"
    packages = ("dramatiq", "redis")
    durable = "Redis"
    handlers = {"sync": "noop", "async": "noop_async"}

    def setup(self) -> None:
        # Harness side: a broker for this measurement's database, made current, and the actors
        # re-declared on it (``Actor.broker`` is the broker ``send`` enqueues on).
        self.broker = RedisBroker(url=self.servers.redis_url)
        dramatiq.set_broker(self.broker)
        for actor in ACTORS.values():
            actor.broker = self.broker
            self.broker.declare_actor(actor)

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        # No bulk API (group(...).run() is the same per-message loop): one enqueue each.
        actor = ACTORS[kind]
        for _ in range(n):
            actor.send(0.0)

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        # redis-py's connection pool makes send() safe from several threads.
        ACTORS[kind].send(t_enq)

    def workers(self, workload: Workload) -> list[list[str]]:
        # 1, 2, 4 and 8 threads drained W1 alike once prefetch was raised: keep the default 8.
        # The io workload is bound by threads asleep: 64 beat 16 and 32, and matched 128.
        threads = "64" if workload == "io" else "8"
        return [[
            PYTHON, "-m", "dramatiq", "bench.peers.dramatiq_bench", "--processes", "2",
            "--threads", threads,
        ]]

    def worker_env(self) -> dict[str, str]:
        # At 5 ms an idle consumer polls 200-400 times a second (about a quarter of one core
        # for both processes); at 10 ms or more the backoff floor is 5-10 ms and W2's median
        # doubles.
        return {"dramatiq_queue_prefetch": "256", "dramatiq_worker_timeout": "5"}

    def quickstart(self, handler: Handler) -> list[list[str]]:
        broker = ":async_broker" if handler == "async" else ""
        return [[script("dramatiq"), f"bench.peers.dramatiq_bench{broker}"]]

    def quickstart_env(self) -> dict[str, str]:
        return {}

    def config(self, workload: Workload) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.worker_env().items())
        return f"{env} {super().config(workload)}"

    def close(self) -> None:
        self.broker.client.close()
