"""W5: one million queued jobs. What the servers hold, what reading them costs, how soon a
worker starts on them.

    python -m bench.scale [--jobs 1000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.env import PYTHON, Processes, worker_env
from bench.http import Api
from bench.ledger import Ledger
from bench.peers.conveyor_bench import app as bench_app
from bench.workloads import percentiles
from conveyor import Conveyor
from conveyor.client import EnqueueRequest
from conveyor.core.settings import Settings
from conveyor.store import make_engine

# The queries behind the list pages, checked with EXPLAIN for sequential scans.
PLANS = {
    "GET /jobs?state=queued": "SELECT * FROM conveyor_jobs WHERE state = 'queued' "
    "ORDER BY id DESC LIMIT 51",
    "GET /jobs?state=queued&cursor=…": "SELECT * FROM conveyor_jobs WHERE state = 'queued' "
    "AND id < CAST(:cursor AS uuid) ORDER BY id DESC LIMIT 51",
}


def run(n_jobs: int, samples: int = 200) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Api("pg-redis", Path(tmp)) as api:
        servers = api.servers
        assert servers.pg_url
        settings = Settings(
            database_url=servers.pg_url, redis_url=servers.redis_url, redis_prefix="bench"
        )
        app = Conveyor(settings)
        app.registry = bench_app.registry
        started = time.perf_counter()
        for start in range(0, n_jobs, 1000):
            app.enqueue_many([EnqueueRequest("noop", {})] * min(1000, n_jobs - start))
        enqueue_s = time.perf_counter() - started
        app.close()
        engine = make_engine(servers.pg_url)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE conveyor_jobs"))
        with servers.redis() as r:
            redis_mb = r.info("memory")["used_memory"] / 2**20
            stream_len = r.xlen("bench:queue:default")
        out: dict[str, Any] = {
            "workload": "w5",
            "system": "conveyor",
            "jobs": n_jobs,
            "enqueue_per_s": round(n_jobs / enqueue_s),
            "redis_used_mb": round(redis_mb, 1),
            "redis_stream_entries": stream_len,
            "api_rss_idle_mb": api.rss_mb(),
        }
        with httpx.Client(base_url=api.base, timeout=30) as http:
            out |= _timed(http, "list_first_page", lambda: "/jobs?state=queued&limit=50", samples)
            cursor = _cursor_at_depth(http, 10_000)
            out |= _timed(
                http,
                "list_10k_deep",
                lambda: f"/jobs?state=queued&limit=50&cursor={cursor}",
                samples,
            )
            with engine.connect() as conn:
                deep = str(
                    conn.execute(
                        text("SELECT id FROM conveyor_jobs ORDER BY id DESC OFFSET :n LIMIT 1"),
                        {"n": min(500_000, n_jobs - 100)},
                    ).scalar_one()
                )
            out |= _timed(
                http,
                "list_page_10000",
                lambda: f"/jobs?state=queued&limit=50&cursor={deep}",
                samples,
            )
            out |= _timed(http, "queues", lambda: "/queues", samples // 4)
            out |= _timed(http, "metrics", lambda: "/metrics", samples // 4)
        out["api_rss_after_mb"] = api.rss_mb()
        out["seq_scans"] = _seq_scans(engine, deep)
        out["worker_first_job_s"] = _first_job(api, servers)
        engine.dispose()
    return out


def _timed(http: httpx.Client, name: str, path: Any, samples: int) -> dict[str, Any]:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        r = http.get(path())
        times.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return percentiles(f"{name}_ms", times) | {f"{name}_ms_mean": round(statistics.mean(times), 2)}


def _cursor_at_depth(http: httpx.Client, depth: int) -> str:
    """Walk the pages by cursor to ``depth`` jobs, as a client would."""
    cursor = None
    for _ in range(depth // 1000):
        url = "/jobs?state=queued&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        cursor = http.get(url).json()["next_cursor"]
    assert cursor
    return str(cursor)


def _seq_scans(engine: Any, cursor: str) -> list[str]:
    """Queries on the read paths whose plan has a sequential scan of the jobs table."""
    found = []
    with engine.connect() as conn:
        for name, sql in PLANS.items():
            rows = conn.execute(text("EXPLAIN " + sql), {"cursor": cursor})
            plan = "\n".join(r[0] for r in rows)
            if "Seq Scan on conveyor_jobs" in plan:
                found.append(name)
    return found


def _first_job(api: Api, servers: Any) -> float:
    """Seconds from launching a worker to its first finished job, with the backlog behind."""
    ledger = Ledger(servers.tmp / "ledger")
    env = worker_env(servers, ledger.path) | {
        "CONVEYOR_DATABASE_URL": api.database_url,
        "CONVEYOR_REDIS_URL": servers.redis_url,
        "CONVEYOR_REDIS_PREFIX": "bench",
    }
    procs = Processes(env, servers.tmp / "worker.log")
    launched = time.time()
    procs.start(
        [
            PYTHON,
            "-m",
            "conveyor",
            "--log-level",
            "WARNING",
            "worker",
            "--app",
            "bench.peers.conveyor_bench:app",
        ]
    )
    try:
        deadline = time.monotonic() + 120
        while ledger.count() == 0:
            procs.check()
            if time.monotonic() > deadline:
                raise RuntimeError("no job ran within 120 s")
            time.sleep(0.01)
        return round(min(e.t_end for e in ledger.entries()) - launched, 3)
    finally:
        procs.stop()


def suite(quick: bool) -> list[dict[str, Any]]:
    return [run(20_000 if quick else 1_000_000, samples=20 if quick else 200)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(run(args.jobs)))


if __name__ == "__main__":
    main()
