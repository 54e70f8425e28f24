"""W6: what one job costs the servers, counted by the servers themselves.

PostgreSQL statements come from pg_stat_statements, on a private PostgreSQL cluster started
for this run (the extension must be preloaded, which the machine's server is not); Redis
commands from INFO commandstats. Two paths: a bulk backlog (enqueue 10,000 in transactions
of 1,000, then drain) and jobs enqueued one at a time to idle workers (the latency path).
Memory (idle and busy workers, the API) is sampled in W1, W2 and W4 for every system.

    python -m bench.resources
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from tests.servers import PrivatePostgres

from bench.env import PYTHON, Processes, Servers, wait_until, worker_env
from bench.ledger import Ledger
from bench.peers.conveyor_bench import app as bench_app
from conveyor import Conveyor
from conveyor.client import EnqueueRequest
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade


class StatementCounter:
    """A private cluster with pg_stat_statements; counts every statement any client runs."""

    def __init__(self) -> None:
        self.pg = PrivatePostgres()
        self.pg.start()  # initdb, then restart with the extension preloaded
        self.pg.stop()
        with open(self.pg.data / "postgresql.conf", "a") as conf:
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
            conf.write("pg_stat_statements.track = all\nfsync = on\n")
        self.pg.start()
        self.url = self.pg.url.rsplit("/", 1)[0] + "/bench"
        with psycopg.connect(self.pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")

    def reset(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")

    def top(self) -> list[tuple[int, str]]:
        """(calls, statement) in the bench database since the last reset, most called first;
        this counter's own queries left out."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT calls, query FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = 'bench' "
                "AND query NOT LIKE '%pg_stat_statements%' ORDER BY calls DESC"
            ).fetchall()
        return [(int(c), " ".join(q.split())) for c, q in rows]

    def close(self) -> None:
        self.pg.cleanup()


def run(n_bulk: int = 10_000, n_single: int = 1_000) -> dict[str, Any]:
    counter = StatementCounter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            servers = Servers(Path(tmp))
            servers.fresh()  # only its Redis database is used; PostgreSQL is the private one
            servers.drop()
            engine = make_engine(counter.url)
            upgrade(engine)
            engine.dispose()
            settings = Settings(database_url=counter.url, redis_url=servers.redis_url,
                                redis_prefix="bench")
            app = Conveyor(settings)
            app.registry = bench_app.registry
            ledger = Ledger(Path(tmp) / "ledger")
            env = worker_env(servers, ledger.path) | {
                "CONVEYOR_DATABASE_URL": counter.url, "CONVEYOR_REDIS_URL": servers.redis_url,
                "CONVEYOR_REDIS_PREFIX": "bench",
            }
            procs = Processes(env, Path(tmp) / "worker.log")
            argv = [PYTHON, "-m", "conveyor", "--log-level", "WARNING", "worker", "--app",
                    "bench.peers.conveyor_bench:app", "--processes", "2", "--concurrency", "200"]
            out: dict[str, Any] = {"workload": "w6", "system": "conveyor"}
            try:
                # Bulk: enqueue, then drain.
                counter.reset()
                redis0 = servers.redis_commands()
                for start in range(0, n_bulk, 1000):
                    app.enqueue_many([EnqueueRequest("noop", {})] * min(1000, n_bulk - start))
                out["bulk_enqueue_statements_per_job"] = _per(counter.top(), n_bulk)
                redis1 = servers.redis_commands()
                counter.reset()
                procs.start(argv)
                if not wait_until(lambda: ledger.count() >= n_bulk, 120, procs.check):
                    raise RuntimeError("the backlog did not drain")
                time.sleep(1.0)  # the last finish batch
                out["bulk_redis_commands_per_job"] = round(
                    (servers.redis_commands() - redis0) / n_bulk, 2)
                out["bulk_enqueue_redis_commands_per_job"] = round((redis1 - redis0) / n_bulk, 2)
                top = counter.top()
                out["bulk_drain_statements_per_job"] = _per(top, n_bulk)
                out["bulk_drain_top_statements"] = _top(top, n_bulk)
                # One at a time, to idle workers (steady 200/s, as in W2).
                ledger.reset()
                time.sleep(2.0)
                counter.reset()
                redis0 = servers.redis_commands()
                t0 = time.perf_counter()
                for i in range(n_single):
                    delay = t0 + i / 200 - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    app.enqueue("noop", {"t_enq": time.time()})
                if not wait_until(lambda: ledger.count() >= n_single, 60, procs.check):
                    raise RuntimeError("single jobs did not run")
                time.sleep(1.0)
                top = counter.top()
                out["single_statements_per_job"] = _per(top, n_single)
                out["single_top_statements"] = _top(top, n_single)
                out["single_redis_commands_per_job"] = round(
                    (servers.redis_commands() - redis0) / n_single, 2)
            finally:
                procs.stop()
                app.close()
    finally:
        counter.close()
    return out


def _per(top: list[tuple[int, str]], n: int) -> float:
    return round(sum(calls for calls, _ in top) / n, 3)


def _top(top: list[tuple[int, str]], n: int, k: int = 8) -> list[list[Any]]:
    return [[round(calls / n, 3), query[:160]] for calls, query in top[:k]]


def suite(quick: bool) -> list[dict[str, Any]]:
    return [run(1_000, 100) if quick else run()]


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
