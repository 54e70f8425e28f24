"""How long a worker takes from its launch to its first job (issue 18: within 0.4 s).

    python -m bench.startup [runs=5] [jobs=1] [backends=pg+redis,pg,sqlite] [processes=2,1]
                            [trees=DIR,DIR]

Each run makes a fresh database (`conveyor db upgrade`), enqueues ``jobs`` no-op jobs, then
launches ``python -m conveyor worker --app startup_app:app [--processes N]`` with a clean
environment (CONVEYOR_DATABASE_URL, CONVEYOR_REDIS_URL, and a Redis key prefix of its own so
runs do not share streams) and reports the first job's ``started_at`` minus the launch's wall
time. Prints the median and the max of the runs per backend and process count. Light on
purpose: one worker launch at a time, one job by default.

Each backend's line comes after its floor: the median launch of a Python that imports only
the third-party modules such a worker runs on (SQLAlchemy, pydantic-settings, click, asyncio,
uvloop, the database driver, redis-py), and of one that imports nothing. Whatever Conveyor
does, its worker cannot start faster than that on this machine.

``trees``: compare source trees (``src`` folders of other checkouts, put first on the
worker's PYTHONPATH; an empty name is the installed Conveyor), their runs interleaved so that
a busy machine weighs on each alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

PG = "postgresql+psycopg://root@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
APP = """
from conveyor import Conveyor
app = Conveyor()

@app.job
def noop() -> None:
    return None
"""
ENQUEUE = """
import sys
from startup_app import app, noop
app.enqueue_many([noop.request()] * int(sys.argv[1]))
app.close()
"""
TIMEOUT_S = 30.0
#: What a worker on each backend runs on, whatever Conveyor does (``_floor``).
LIBRARIES = {
    "sqlite": ["asyncio", "click", "pydantic_settings", "sqlalchemy", "sqlite3", "uvloop"],
    "pg": ["asyncio", "click", "pydantic_settings", "sqlalchemy", "psycopg", "uvloop"],
    "pg+redis": [
        "asyncio",
        "click",
        "pydantic_settings",
        "sqlalchemy",
        "psycopg",
        "uvloop",
        "redis",
    ],
}


def _database(backend: str, name: str, folder: Path) -> tuple[str, dict[str, str]]:
    """A fresh database for one run, and the Conveyor variables that name it."""
    if backend == "sqlite":
        return f"sqlite:///{folder / name}.db", {}
    admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    extra = {"CONVEYOR_REDIS_URL": REDIS, "CONVEYOR_REDIS_PREFIX": name}
    return f"{PG}/{name}", extra if backend == "pg+redis" else {}


def _drop(backend: str, name: str) -> None:
    if backend == "sqlite":
        return
    admin = create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    if backend == "pg+redis":
        import redis

        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _first_start(url: str, launched: float) -> float | None:
    """Seconds from launch to the first job's start, polled until it comes (None: never)."""
    engine = create_engine(url)
    try:
        while time.time() - launched < TIMEOUT_S:
            with engine.connect() as conn:
                first = conn.execute(text("SELECT min(started_at) FROM conveyor_jobs")).scalar()
            if first is not None:
                return _epoch(first) - launched
            time.sleep(0.02)
        return None
    finally:
        engine.dispose()


def one_run(backend: str, processes: int, jobs: int, folder: Path, tree: str) -> float | None:
    name = f"conveyor_startup_{uuid.uuid4().hex[:8]}"
    url, extra = _database(backend, name, folder)
    env = {"PATH": os.environ.get("PATH", ""), "CONVEYOR_DATABASE_URL": url, **extra}
    if tree:
        env["PYTHONPATH"] = tree
    python = sys.executable
    try:
        subprocess.run([python, "-m", "conveyor", "db", "upgrade"], env=env, cwd=folder,
                       check=True, capture_output=True)  # fmt: skip
        path = os.pathsep.join(p for p in (tree, str(folder)) if p)
        subprocess.run([python, "-c", ENQUEUE, str(jobs)], env={**env, "PYTHONPATH": path},
                       cwd=folder, check=True, capture_output=True)  # fmt: skip
        command = [python, "-m", "conveyor", "worker", "--app", "startup_app:app"]
        if processes > 1:
            command += ["--processes", str(processes)]
        log = folder / f"{name}.log"
        with log.open("wb") as out:
            launched = time.time()
            worker = subprocess.Popen(command, env=env, cwd=folder, stdout=out, stderr=out)
            try:
                seconds = _first_start(url, launched)
            finally:
                worker.terminate()
                worker.wait(30)
        if seconds is None:
            print(log.read_text()[-2000:], file=sys.stderr)
        return seconds
    finally:
        _drop(backend, name)


def _floor(backend: str, runs: int) -> str:
    """The median launch of a bare Python, and of one importing the backend's libraries
    (with the collector held back while it imports, as ``conveyor worker`` does)."""
    env = {"PATH": os.environ.get("PATH", "")}
    imports = "import gc\ngc.set_threshold(200_000)\n" + "\n".join(
        f"try:\n    import {m}\nexcept ImportError:\n    pass" for m in LIBRARIES[backend]
    )

    def launch(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return time.perf_counter() - started

    bare = statistics.median(launch("pass") for _ in range(runs))
    full = statistics.median(launch(imports) for _ in range(runs))
    return f"{backend:<9} floor: python alone {bare:.3f} s, with its libraries {full:.3f} s"


def _epoch(value: datetime | str) -> float:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    options = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg)
    runs = int(options.get("runs", 5))
    jobs = int(options.get("jobs", 1))
    backends = options.get("backends", "pg+redis,pg,sqlite").split(",")
    counts = [int(n) for n in options.get("processes", "2,1").split(",")]
    trees = options.get("trees", "").split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "startup_app.py").write_text(APP)
        for backend in backends:
            print(_floor(backend, runs), flush=True)
            for processes in counts:
                found: dict[str, list[float | None]] = {tree: [] for tree in trees}
                for _ in range(runs):
                    for tree in trees:
                        found[tree].append(one_run(backend, processes, jobs, folder, tree))
                for tree in trees:
                    print(_line(backend, processes, tree, found[tree]), flush=True)


def _line(backend: str, processes: int, tree: str, found: list[float | None]) -> str:
    times = [s for s in found if s is not None]
    median = statistics.median(times) if times else float("nan")
    worst = max(times, default=float("nan"))
    shown = " ".join(f"{s:.3f}" for s in times)
    missing = "; some never started" if len(times) < len(found) else ""
    label = f" [{tree}]" if tree else ""
    return (
        f"{backend:<9} --processes {processes}{label}  launch -> first job: median "
        f"{median:.3f} s, max {worst:.3f} s  ({shown}{missing})"
    )


if __name__ == "__main__":
    main()
