"""Celery 5 with the Redis broker, in its favourable documented setup for short tasks.

No result backend and ``task_ignore_result``; early acks (the default); no events, heartbeats,
gossip or mingle; log level WARNING; a raised ``--prefetch-multiplier``. W1 and W2 run two
``--pool solo`` workers (one per core): each executes tasks in its consumer, so no message
crosses a pipe to a pool child. W3 (10 ms ``time.sleep``) runs two ``--pool threads`` workers.

Quick-start (the defaults workload): ``celery -A bench.peers.celery_bench worker``, one worker
with the default prefork pool of one child per CPU (2 here), the default prefetch multiplier
(4) and log level (WARNING; the tutorial adds ``--loglevel=INFO``). The app's settings above
change nothing there: with no result backend nothing is stored, and events are off by default.
Celery 5 runs plain functions only: no ``async def`` task.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

from celery import Celery, Task

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import Handler, Kind, System, Workload, script

QUEUE = "bench"

app = Celery("bench", broker=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14"))
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    result_backend=None,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)


@app.task
def noop(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


@app.task
def sleep(t_enq: float = 0.0) -> None:
    started = time.time()
    time.sleep(0.01)
    mark(t_enq, started)


TASKS: dict[Kind, Task] = {"noop": noop, "sleep": sleep}


class CeleryRedis(System):
    name: ClassVar[str] = "celery"
    label: ClassVar[str] = "Celery (Redis broker)"
    packages = ("celery", "kombu", "redis")
    durable = "Redis"
    handlers = {"sync": "noop"}

    def setup(self) -> None:
        app.conf.broker_url = self.servers.redis_url
        # The Redis transport routes by a binding set the flush removed, and producers remember
        # what they declared: declare the queue again on every fresh database.
        with app.connection_for_write() as conn:
            app.amqp.queues[QUEUE].bind(conn.default_channel).declare()

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        # No bulk API: apply_async in a loop on one producer (one connection) from the pool.
        task = TASKS[kind]
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                task.apply_async((0.0,), producer=producer)

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        # Each call takes a producer from the app's thread-safe pool.
        TASKS[kind].apply_async((t_enq,))

    def workers(self, workload: Workload) -> list[list[str]]:
        # Two worker instances, one per core. solo runs each task in the consumer itself
        # (prefork with 2 or 4 children drained W1 at less than half the rate); the io
        # workload needs concurrency, where 2 x 32 threads beat prefork children and 16/64.
        if workload == "io":
            pool = ["--pool", "threads", "--concurrency", "32", "--prefetch-multiplier", "4"]
        else:
            pool = ["--pool", "solo", "--prefetch-multiplier", "64"]
        return [
            [
                PYTHON, "-m", "celery", "-A", "bench.peers.celery_bench", "worker",
                "--loglevel", "WARNING", *pool, "--without-heartbeat", "--without-gossip",
                "--without-mingle", "-n", f"w{i}@%h",
            ]
            for i in (1, 2)
        ]

    def quickstart(self, handler: Handler) -> list[list[str]]:
        return [[script("celery"), "-A", "bench.peers.celery_bench", "worker"]]

    def close(self) -> None:
        # Nothing to release: the app's connection and producer pools belong to the process
        # (kombu keys them by broker URL, the same for every measurement) and are reused.
        # Force-closing them would leave the app holding closed pools.
        pass
