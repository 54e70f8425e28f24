"""Conveyor as a new user runs it: `conveyor worker --app ... --processes 2` and nothing else
(concurrency 10, the default log level), 10,000 no-op jobs enqueued first, plain `def` and
`async def` handlers, on PostgreSQL + Redis, PostgreSQL alone and SQLite.

    python -m bench.defaults [jobs=10000] [backends=pg+redis,pg,sqlite] [kinds=sync,async]

Prints, per backend and handler kind, jobs/s from the worker's launch to the last finish,
jobs/s from the first start, and how long after launch the first job started. A quick probe
for issue 18 (fast by default), not yet a workload of the suite (``python -m bench``): it uses
the local PostgreSQL and Redis and makes a database per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from conveyor.client import EnqueueOptions, EnqueueRequest

PG = "postgresql+psycopg://root@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
APP = '''
from conveyor import Context, Conveyor
app = Conveyor()

@app.job
def noop_sync(ctx: Context) -> None:
    return None

@app.job
async def noop_async(ctx: Context) -> None:
    return None
'''


def run(backend: str, kind: str, jobs: int, folder: Path) -> str:
    name = f"conveyor_defaults_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    if backend == "sqlite":
        url = f"sqlite:///{folder / name}.db"
    else:
        admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = f"{PG}/{name}"
        if backend == "pg+redis":
            env.update(CONVEYOR_REDIS_URL=REDIS, CONVEYOR_REDIS_PREFIX=name)
    env.update(CONVEYOR_DATABASE_URL=url, PYTHONPATH=str(folder))
    python = sys.executable
    subprocess.run([python, "-m", "conveyor", "db", "upgrade"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    from conveyor import Conveyor
    from conveyor.core.settings import Settings

    client_env = {k.removeprefix("CONVEYOR_").lower(): v for k, v in env.items()
                  if k.startswith("CONVEYOR_")}  # fmt: skip
    sys.path.insert(0, str(folder))
    import defaults_app  # the app file written below

    app = Conveyor(Settings(**client_env))
    app.registry = defaults_app.app.registry
    for start in range(0, jobs, 1000):
        batch = [EnqueueRequest(f"noop_{kind}", {}, EnqueueOptions())] * min(1000, jobs - start)
        app.client.enqueue_many(batch)
    launched = time.time()
    worker = subprocess.Popen(
        [python, "-m", "conveyor", "worker", "--app", "defaults_app:app", "--processes", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    engine = create_engine(url)
    try:
        while True:
            with engine.connect() as conn:
                done, first, last = conn.execute(text(
                    "SELECT count(*), min(started_at), max(finished_at) FROM conveyor_jobs"
                    " WHERE state = 'completed'"
                )).one()  # fmt: skip
            if done >= jobs:
                break
            if time.time() - launched > 300:
                return f"{backend:<9} {kind:<6} timed out with {done:,} of {jobs:,} done"
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(60)
        engine.dispose()
        app.close()
    first_s, last_s = _epoch(first), _epoch(last)
    return (
        f"{backend:<9} {kind:<6} {jobs / (last_s - launched):8,.0f} jobs/s from launch"
        f" {jobs / (last_s - first_s):8,.0f} from the first start"
        f"   first job {first_s - launched:.2f} s after launch"
    )


def _epoch(value: datetime | str) -> float:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    options = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg)
    jobs = int(options.get("jobs", 10_000))
    backends = options.get("backends", "pg+redis,pg,sqlite").split(",")
    kinds = options.get("kinds", "sync,async").split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "defaults_app.py").write_text(APP)
        for backend in backends:
            for kind in kinds:
                print(run(backend, kind, jobs, folder), flush=True)


if __name__ == "__main__":
    main()
