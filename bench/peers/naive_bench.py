"""The design a team writes first: RQ plus a PostgreSQL ``job_status`` table (SQLAlchemy 2).

The enqueuer inserts a 'queued' row, then enqueues to RQ (bulk: one multi-row INSERT, then
``enqueue_many``). The job sets 'started', then 'finished', each in its own transaction. RQ's
default ``Worker`` forks a work horse per job, so the lazily created module-level engine is
built (and connects) anew in every job: that cost is the point of this peer.

Workers: two forking ``rq.worker.Worker`` processes, one per core, each started by this module
as a worker script that imports the job module (SQLAlchemy, psycopg) before the work loop
forks: RQ's documented pattern for jobs that share heavy imports ("Performance notes"), so the
fork pays for the engine, not for re-importing SQLAlchemy every job.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import ClassVar

from redis import Redis
from rq import Queue, get_current_job
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    update,
)

from bench.env import PYTHON
from bench.ledger import mark
from bench.peers.base import Kind, System, Workload

metadata = MetaData()
job_status = Table(
    "job_status",
    metadata,
    Column("id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), server_default=func.now()),
)
_engine: Engine | None = None


def make_engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def engine() -> Engine:
    """The job side's engine, created on first use: in a forked work horse, every job."""
    global _engine
    if _engine is None:
        _engine = make_engine(os.environ["BENCH_PG"])
    return _engine


def set_state(state: str) -> None:
    job = get_current_job()
    assert job is not None
    with engine().begin() as conn:
        conn.execute(
            update(job_status)
            .where(job_status.c.id == job.id)
            .values(state=state, updated_at=func.now())
        )


def noop(t_enq: float = 0.0) -> None:
    started = time.time()
    set_state("started")
    set_state("finished")
    mark(t_enq, started)


def sleep(t_enq: float = 0.0) -> None:
    started = time.time()
    set_state("started")
    time.sleep(0.01)
    set_state("finished")
    mark(t_enq, started)


FUNCS = {"noop": noop, "sleep": sleep}


class Naive(System):
    name: ClassVar[str] = "naive"
    label: ClassVar[str] = "Naive: RQ + PostgreSQL status table"
    packages = ("rq", "redis", "sqlalchemy", "psycopg")
    uses = ("redis", "postgresql")
    durable = "Redis (job); PostgreSQL (status row)"

    def setup(self) -> None:
        assert self.servers.pg_url
        self.engine = make_engine(self.servers.pg_url)
        metadata.create_all(self.engine)
        self.redis = Redis.from_url(self.servers.redis_url)
        self.queue = Queue("bench", connection=self.redis)

    def enqueue_bulk(self, kind: Kind, n: int) -> None:
        func_ = FUNCS[kind]
        for start in range(0, n, 1000):
            ids = [uuid.uuid4().hex for _ in range(min(1000, n - start))]
            with self.engine.begin() as conn:
                conn.execute(insert(job_status).values([{"id": i, "state": "queued"} for i in ids]))
            self.queue.enqueue_many([Queue.prepare_data(func_, (0.0,), job_id=i) for i in ids])

    def enqueue_one(self, kind: Kind, t_enq: float) -> None:
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(insert(job_status).values(id=job_id, state="queued"))
        self.queue.enqueue(FUNCS[kind], t_enq, job_id=job_id)

    def workers(self, workload: Workload) -> list[list[str]]:
        # RQ runs one job at a time per worker process: one process per core.
        argv = [PYTHON, "-m", "bench.peers.naive_bench"]
        return [argv, argv]

    def config(self, workload: Workload) -> str:
        return "2 x rq.worker.Worker (fork per job), bench.peers.naive_bench worker script"

    def close(self) -> None:
        self.redis.close()
        self.engine.dispose()


def run_worker() -> None:
    from rq.worker import Worker

    redis = Redis.from_url(os.environ["BENCH_REDIS"])
    Worker(["bench"], connection=redis).work(logging_level="WARNING")


if __name__ == "__main__":
    # Import under the module's own name, so the forked work horses find the jobs loaded.
    from bench.peers.naive_bench import run_worker as run

    run()
