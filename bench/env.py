"""Servers, databases and processes the benchmark suite uses.

Every system gets a fresh PostgreSQL database and an emptied Redis database (number
``BENCH_REDIS_DB``, 14 by default, never 0) per measurement, so one run cannot leave work for
the next.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "14"))
if REDIS_DB == 0:
    raise SystemExit("BENCH_REDIS_DB must not be 0: the suite empties it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Servers:
    """A fresh PostgreSQL database and an empty Redis database for one measurement."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis_url = f"{REDIS_BASE.rstrip('/')}/{REDIS_DB}"
        self.pg_url: str | None = None
        self._db: str | None = None

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def fresh(self) -> None:
        self.drop()
        with self.redis() as r:
            r.flushdb()
        self._db = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self._db}"')
        self.pg_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self._db}"

    def drop(self) -> None:
        if self._db is not None:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._db}" WITH (FORCE)')
            self._db = None
            self.pg_url = None

    def analyze(self) -> None:
        """Table statistics for the backlog, as autovacuum would gather on a server in
        steady state (this one may have it off): the same for every PostgreSQL system."""
        if self.pg_url:
            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                conn.execute("ANALYZE")

    def redis_commands(self) -> int:
        """Commands the Redis server has executed (all clients), from INFO commandstats."""
        with self.redis() as r:
            stats = r.info("commandstats")
        return sum(int(v["calls"]) for v in stats.values())


class Processes:
    """Worker processes started in their own sessions and stopped as whole groups."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def rss_mb(self) -> tuple[float, float]:
        """(largest process, sum of all processes) resident memory of the workers and their
        children, in MiB."""
        sizes = []
        for proc in self.procs:
            try:
                root = psutil.Process(proc.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in tree:
                try:
                    sizes.append(p.memory_info().rss / 2**20)
                except psutil.NoSuchProcess:
                    pass
        return (round(max(sizes), 1), round(sum(sizes), 1)) if sizes else (0.0, 0.0)

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker {proc.args!r} exited with {proc.returncode}; log:\n{tail(self.log)}"
                )

    def stop(self, grace: float = 5.0) -> None:
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def worker_env(servers: Servers, ledger: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(
        PYTHONPATH=str(ROOT),
        BENCH_LEDGER=str(ledger),
        BENCH_REDIS=servers.redis_url,
        BENCH_PG=servers.pg_url or "",
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_until(cond: Callable[[], bool], timeout: float, check: Callable[[], None]) -> bool:
    """Poll ``cond`` every 20 ms until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        check()
        time.sleep(0.02)
    return cond()


PYTHON = sys.executable


def cpu_probe_us() -> float:
    """Microseconds one core takes for ``sum(range(1000))`` (best of 200): how fast this
    machine runs Python, so figures from different machines can be told apart (2-3x apart
    among the machines this suite has run on)."""
    best = float("inf")
    for _ in range(200):
        started = time.perf_counter()
        sum(range(1000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1e6, 2)


class Machine:
    """What else the machine did while one measurement ran, for explaining a figure that does
    not reproduce: the load before it, the share of both cores busy during it (everything,
    the system under test included), time stolen by the hypervisor, and the harness's own
    CPU (it enqueues and reads the ledger)."""

    def __init__(self) -> None:
        self.load_before = os.getloadavg()[0]
        self.speed_us = cpu_probe_us()
        self._cpu = psutil.cpu_times()
        self._own = psutil.Process().cpu_times()
        self._wall = time.monotonic()

    def summary(self) -> dict[str, float]:
        cpu, own = psutil.cpu_times(), psutil.Process().cpu_times()
        total = sum(cpu) - sum(self._cpu)
        idle = (cpu.idle + getattr(cpu, "iowait", 0.0)) - (
            self._cpu.idle + getattr(self._cpu, "iowait", 0.0)
        )
        steal = getattr(cpu, "steal", 0.0) - getattr(self._cpu, "steal", 0.0)
        wall = time.monotonic() - self._wall
        return {
            "load_before": round(self.load_before, 2),
            "cpu_probe_us": self.speed_us,
            "busy_share": round(1 - idle / total, 3) if total > 0 else 0.0,
            "steal_share": round(steal / total, 4) if total > 0 else 0.0,
            "harness_cpu_share": round(
                ((own.user + own.system) - (self._own.user + self._own.system))
                / (wall * (psutil.cpu_count() or 1)),
                3,
            )
            if wall > 0
            else 0.0,
        }
