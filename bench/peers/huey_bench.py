"""Huey 3 on Redis (``RedisHuey``), fire-and-forget.

``results=False``: huey's documented setting for tasks whose return value nobody reads (no
result is written per task). The storage is the default blocking one (BRPOP), so an idle worker
wakes as soon as a task is pushed; the polling options (``-d``/``-m``/``-b``) only apply to
polling storages and after errors, and are set short anyway. ``-n`` skips the periodic-task
scheduler (there are no periodic tasks). Workers: two consumers, one per core, each measured
best on this 2-core machine against ``-k process -w 2`` and single consumers: ``-k thread -w 4``
for no-op tasks (threads overlap the Redis round trips; process workers were slowest), and for
10 ms sleeps huey's documented I/O choice, ``-k greenlet -w 200`` under gevent's documented
``python -m gevent.monkey`` launcher (``-k thread -w 128`` when gevent is not installed).
Bulk enqueue is ``task.map()``, huey's documented fan-out API: a loop of single enqueues (one
LPUSH each); huey offers no pipelined bulk enqueue.

Quick-start (the defaults workload): ``huey_consumer bench.peers.huey_bench.quickstart_huey``,
twice (two processes, one worker thread each: the consumer's defaults), on a ``RedisHuey``
with its default settings (results on; a task returning None stores none). Its queue and task
names are the tuned instance's, so the harness enqueues through either. Huey refuses
``async def`` tasks.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from typing import ClassVar

from huey import RedisHuey
from huey.api import TaskWrapper

from bench.env import PYTHON, REDIS_BASE, REDIS_DB
from bench.ledger import mark
from bench.peers.base import Handler, Kind, System, Workload, script


def noop(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


def sleep(t_enq: float = 0.0) -> None:
    started = time.time()
    time.sleep(0.01)
    mark(t_enq, started)


FUNCS: dict[str, Callable[[float], None]] = {"noop": noop, "sleep": sleep}


def make_huey(url: str, results: bool = False) -> tuple[RedisHuey, dict[str, TaskWrapper]]:
    """A Huey instance with both tasks registered (under the same names in every instance)."""
    instance = RedisHuey("bench", url=url, results=results)
    return instance, {kind: instance.task()(fn) for kind, fn in FUNCS.items()}


# The consumers' instances (huey_consumer bench.peers.huey_bench.huey), on the worker's URL.
URL = os.environ.get("BENCH_REDIS") or f"{REDIS_BASE.rstrip('/')}/{REDIS_DB}"
huey, TASKS = make_huey(URL)
quickstart_huey, _ = make_huey(URL, results=True)  # RedisHuey's default


class HueyRedis(System):
    name: ClassVar[str] = "huey"
    label: ClassVar[str] = "Huey (Redis)"
    packages = ("huey", "redis", "gevent")
    durable = "Redis"
    handlers = {"sync": "noop"}

    def setup(self) -> None:
        self.huey, self.tasks = make_huey(self.servers.redis_url)

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        self.tasks[kind].map([0.0] * n)

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        self.tasks[kind](t_enq)

    def workers(self, workload: Workload) -> list[list[str]]:
        consumer = ["-m", "huey.bin.huey_consumer", "bench.peers.huey_bench.huey"]
        if workload != "io":
            mode = ["-k", "thread", "-w", "4"]
        elif importlib.util.find_spec("gevent"):
            consumer = ["-m", "gevent.monkey", "--module", *consumer[1:]]
            mode = ["-k", "greenlet", "-w", "200"]
        else:
            mode = ["-k", "thread", "-w", "128"]
        argv = [PYTHON, *consumer, *mode, "-d", "0.001", "-m", "0.01", "-b", "1.0", "-n", "-q"]
        return [argv, argv]

    def quickstart(self, handler: Handler) -> list[list[str]]:
        argv = [script("huey_consumer"), "bench.peers.huey_bench.quickstart_huey"]
        return [argv, argv]

    def close(self) -> None:
        self.huey.storage.pool.disconnect()
