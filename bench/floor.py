"""W2's floor: what this machine allows for enqueue -> start, in a few lines of raw client code.

Two designs, each with an enqueuing process and an idle consumer process, jobs sent at a
steady rate, no framework in the way:

- ``redis-pop``: LPUSH, and a consumer blocked in BRPOP starts the job. What Huey, RQ and
  Celery's Redis transport do at their core; nothing is durable.
- ``durable-claim``: INSERT the job and commit, XADD its id; a consumer blocked in
  XREADGROUP claims the row (UPDATE ... WHERE state = 'queued', committed) and only then
  starts the job. The least a system can do that never runs a job PostgreSQL does not know
  it owns: Conveyor's path, with raw psycopg and redis-py and nothing else.

The gap between the two is the price of the durable claim on this machine; a framework can
approach the second figure, not the first.

    python -m bench.floor
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.env import Servers

QUEUE = "floor"


def _consumer(design: str, pg_url: str | None, redis_url: str, n: int, out: Any) -> None:
    r = redis.Redis.from_url(redis_url)
    waits: list[float] = []
    if design == "redis-pop":
        while len(waits) < n:
            _, t_enq = r.brpop([QUEUE])  # type: ignore[misc]
            waits.append(time.time() - float(t_enq))
    else:
        assert pg_url
        pg = psycopg.connect(pg_url, autocommit=True)
        while len(waits) < n:
            reply: Any = r.xreadgroup("g", "c", {QUEUE: ">"}, count=10, block=1000)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    claimed = pg.execute(
                        "UPDATE floor_jobs SET state = 'running' "
                        "WHERE id = %s AND state = 'queued' RETURNING payload",
                        (fields[b"id"].decode(),),
                    ).fetchone()
                    assert claimed is not None
                    waits.append(time.time() - float(claimed[0]["t_enq"]))
                    r.xack(QUEUE, "g", entry_id)
    out.put(waits)


def measure(design: str, rate: int = 200, seconds: float = 5.0) -> dict[str, Any]:
    n = int(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        servers = Servers(Path(tmp))
        servers.fresh()
        try:
            r = servers.redis()
            pg = None
            if design == "durable-claim":
                pg = psycopg.connect(servers.pg_url or "", autocommit=True)
                pg.execute(
                    "CREATE TABLE floor_jobs (id uuid PRIMARY KEY, state text NOT NULL, "
                    "payload jsonb NOT NULL)"
                )
                r.xgroup_create(QUEUE, "g", id="0", mkstream=True)
            out: Any = mp.get_context("spawn").Queue()
            consumer = mp.get_context("spawn").Process(
                target=_consumer, args=(design, servers.pg_url, servers.redis_url, n, out)
            )
            consumer.start()
            time.sleep(1.5)  # the consumer is up and blocked: idle and warm
            t0 = time.perf_counter()
            for i in range(n):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t_enq = time.time()
                if pg is None:
                    r.lpush(QUEUE, repr(t_enq))
                    continue
                job_id = str(uuid.uuid4())
                pg.execute(
                    "INSERT INTO floor_jobs VALUES (%s, 'queued', %s)",
                    (job_id, json.dumps({"t_enq": t_enq})),
                )
                r.xadd(QUEUE, {"id": job_id})
            waits = sorted(out.get(timeout=60))
            consumer.join(10)
            if pg is not None:
                pg.close()
        finally:
            servers.drop()
    q = statistics.quantiles(waits, n=100)
    return {
        "workload": "w2floor",
        "system": design,
        "rate": rate,
        "jobs": n,
        "start_ms_p50": round(q[49] * 1000, 2),
        "start_ms_p95": round(q[94] * 1000, 2),
        "start_ms_p99": round(q[98] * 1000, 2),
    }


def suite(quick: bool) -> list[dict[str, Any]]:
    seconds = 1.0 if quick else 5.0
    return [measure(design, 200, seconds) for design in ("redis-pop", "durable-claim")]


def main() -> None:
    for line in suite(quick=False):
        print(json.dumps(line))


if __name__ == "__main__":
    main()
