"""RQ 2.x: the forking ``Worker`` and the in-process ``SimpleWorker`` (Redis).

Two worker processes (RQ runs one job at a time per process: one per core), started by this
module as a worker script that imports the job module before the work loop: RQ's documented
pattern for fast workers ("Performance notes"), so a forked work horse does not import the
jobs again for every job.

Quick-start (the defaults workload): ``rq worker bench`` as its docs start a worker, twice (RQ
runs one job at a time per process: "simply start more workers"), with the Redis URL in
``RQ_REDIS_URL``. Each forked work horse imports this module afresh for every job, as it
would a user's job module: so it imports nothing heavy at module level (``bench.env`` would
add psycopg and psutil, about 0.1 s a job). RQ runs an ``async def`` job too, on a new event
loop per job (``Job._execute``, since rq/rq#1405).
"""

from __future__ import annotations

import os
import sys
import time
from typing import ClassVar

from redis import Redis

from bench.ledger import mark
from bench.peers.base import Handler, Kind, System, Workload, script


def noop(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


async def noop_async(t_enq: float = 0.0) -> None:
    mark(t_enq, time.time())


def sleep(t_enq: float = 0.0) -> None:
    started = time.time()
    time.sleep(0.01)
    mark(t_enq, started)


FUNCS = {"noop": noop, "sleep": sleep, "noop_async": noop_async}


class RQSimple(System):
    name: ClassVar[str] = "rq-simple"
    label: ClassVar[str] = "RQ SimpleWorker"
    packages = ("rq", "redis")
    durable = "Redis"
    worker_class = "rq.worker.SimpleWorker"

    def setup(self) -> None:
        from rq import Queue

        self.redis = Redis.from_url(self.servers.redis_url)
        self.queue = Queue("bench", connection=self.redis)

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        from rq import Queue

        func = FUNCS[kind]
        for start in range(0, n, 1000):
            self.queue.enqueue_many(
                [Queue.prepare_data(func, (0.0,)) for _ in range(min(1000, n - start))]
            )

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        self.queue.enqueue(FUNCS[kind], t_enq)

    def workers(self, workload: Workload) -> list[list[str]]:
        argv = [sys.executable, "-m", "bench.peers.rq_bench", self.worker_class]
        return [argv, argv]

    def config(self, workload: Workload) -> str:
        return f"2 x {self.worker_class}, bench.peers.rq_bench worker script (jobs preloaded)"

    def close(self) -> None:
        self.redis.close()


class RQFork(RQSimple):
    name = "rq"
    label = "RQ Worker (fork per job)"
    worker_class = "rq.worker.Worker"
    handlers = {"sync": "noop", "async": "noop_async"}

    def quickstart(self, handler: Handler) -> list[list[str]]:
        argv = [script("rq"), "worker", "bench"]
        return [argv, argv]

    def quickstart_env(self) -> dict[str, str]:
        return {"RQ_REDIS_URL": self.servers.redis_url}


def run_worker(worker_class: str) -> None:
    from rq.utils import import_attribute

    redis = Redis.from_url(os.environ["BENCH_REDIS"])
    worker = import_attribute(worker_class)(["bench"], connection=redis)
    worker.work(logging_level="WARNING")


if __name__ == "__main__":
    # Import under the module's own name, so that work horses find the jobs loaded.
    from bench.peers.rq_bench import run_worker as run

    run(sys.argv[1])
