"""W1: N no-op jobs enqueued in bulk, then drained by `conveyor worker --processes P`.

python -m bench.throughput --backend pg-redis --jobs 10000 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import func, select

from bench.jobs import app as bench_app
from conveyor import Conveyor
from conveyor.client import EnqueueRequest
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from conveyor.store.tables import attempts, jobs

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _database(backend: str, tmp: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}", None
    name = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    return url, (REDIS if backend == "pg-redis" else None)


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(backend: str, n_jobs: int, processes: int, concurrency: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        db_url, redis_url = _database(backend, tmp)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        try:
            engine = make_engine(db_url)
            upgrade(engine)
            settings = Settings(database_url=db_url, redis_url=redis_url, redis_prefix=prefix)
            app = Conveyor(settings)
            app.registry = bench_app.registry
            started = time.perf_counter()
            for start in range(0, n_jobs, 1000):
                batch = min(1000, n_jobs - start)
                app.enqueue_many([EnqueueRequest("noop", {})] * batch)
            enqueue_s = time.perf_counter() - started
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
            env.update(CONVEYOR_DATABASE_URL=db_url, CONVEYOR_REDIS_PREFIX=prefix)
            env["PYTHONPATH"] = str(ROOT)
            if redis_url:
                env["CONVEYOR_REDIS_URL"] = redis_url
            argv = [
                sys.executable,
                "-m",
                "conveyor",
                "--log-level",
                "WARNING",
                "worker",
                "--app",
                "bench.jobs:app",
                "--processes",
                str(processes),
                "--concurrency",
                str(concurrency),
            ]
            launched = time.perf_counter()
            worker = subprocess.Popen(argv, env=env, cwd=ROOT)
            done_query = select(func.count()).select_from(jobs).where(jobs.c.state == "completed")
            while True:
                with engine.connect() as conn:
                    done = conn.execute(done_query).scalar_one()
                if done >= n_jobs:
                    break
                if worker.poll() is not None:
                    raise RuntimeError("the worker exited early")
                time.sleep(0.05)
            drained_s = time.perf_counter() - launched
            with engine.connect() as conn:
                first, last = conn.execute(
                    select(func.min(jobs.c.started_at), func.max(jobs.c.finished_at))
                ).one()
                attempt_rows = conn.execute(select(func.count()).select_from(attempts)).scalar()
            if attempt_rows != n_jobs:
                raise RuntimeError(f"{attempt_rows} attempt rows for {n_jobs} jobs")
            worker.terminate()
            worker.wait(30)
            app.close()
            engine.dispose()
        finally:
            _drop(db_url)
    busy_s = (last - first).total_seconds()
    return {
        "workload": "W1 throughput",
        "system": f"conveyor ({backend})",
        "jobs": n_jobs,
        "processes": processes,
        "concurrency": concurrency,
        "enqueue_jobs_per_s": round(n_jobs / enqueue_s),
        "jobs_per_s_from_launch": round(n_jobs / drained_s),
        "jobs_per_s_first_to_last": round(n_jobs / busy_s) if busy_s > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["pg-redis", "pg", "sqlite"], default="pg-redis")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(run(args.backend, args.jobs, args.processes, args.concurrency)))


if __name__ == "__main__":
    main()
