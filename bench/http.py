"""W4: POST /jobs with 50 concurrent clients against one `conveyor api` process, and
POST /jobs/batch with 1,000 jobs per request: from 4 concurrent clients (the endpoint's
throughput: one request's validation overlaps another's insert) and from one client sending
them back to back (each request's latency adds up).

    python -m bench.http --backend pg-redis --seconds 10 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.env import ROOT, Servers, free_port
from conveyor.store import make_engine
from conveyor.store.schema import upgrade


async def _single(base: str, clients: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:

        async def client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                r = await http.post("/jobs", json={"type": "noop", "payload": {}})
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: {r.text}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies), latencies


BATCH_CLIENTS = 4


async def _batches(base: str, requests: int, clients: int = 1) -> float:
    """Seconds to send ``requests`` batches of 1,000 jobs from ``clients`` connections."""
    body = {"jobs": [{"type": "noop", "payload": {}}] * 1000}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        left = [requests]

        async def client() -> None:
            while left[0] > 0:
                left[0] -= 1
                r = await http.post("/jobs/batch", json=body)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - started


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{"type": "noop", "payload": {}}'
wrk.headers["Content-Type"] = "application/json"
"""


def _wrk(base: str, clients: int, seconds: float) -> tuple[float, float, float] | None:
    """POST /jobs load from wrk (C, one thread) when installed: the Python client would be
    the bottleneck. Returns (requests/s, p50 ms, p99 ms)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    out = subprocess.run(
        [wrk, "-t1", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "-s", script.name,
         f"{base}/jobs"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(out)
    return rate, _wrk_ms(out, "50%"), _wrk_ms(out, "99%")


def _wrk_ms(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


class Api:
    """One `conveyor api` process on this measurement's servers."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.servers = Servers(tmp)
        self.backend = backend
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Api:
        self.servers.fresh()
        if self.backend == "sqlite":
            self.database_url = f"sqlite:///{self.servers.tmp / 'api.db'}"
        else:
            assert self.servers.pg_url
            self.database_url = self.servers.pg_url
        engine = make_engine(self.database_url)
        upgrade(engine)
        engine.dispose()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
        env.update(
            CONVEYOR_DATABASE_URL=self.database_url,
            PYTHONPATH=str(ROOT),
            CONVEYOR_REDIS_PREFIX="bench",
        )
        if self.backend == "pg-redis":
            env["CONVEYOR_REDIS_URL"] = self.servers.redis_url
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "--log-level", "WARNING", "api",
             "--app", "bench.peers.conveyor_bench:app", "--port", str(port)],
            env=env, cwd=ROOT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        _wait_healthy(self.base)
        return self

    def rss_mb(self) -> float:
        assert self.proc is not None
        return round(psutil.Process(self.proc.pid).memory_info().rss / 2**20, 1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        self.servers.drop()


def run(backend: str, clients: int, seconds: float, batches: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, Api(backend, Path(tmp)) as api:
        idle_rss = api.rss_mb()
        measured = _wrk(api.base, clients, seconds)
        if measured is None:
            n, latencies = asyncio.run(_single(api.base, clients, seconds))
            latencies.sort()
            measured = (
                n / seconds,
                latencies[len(latencies) // 2] * 1000,
                latencies[int(len(latencies) * 0.99)] * 1000,
            )
        batch_s = asyncio.run(_batches(api.base, batches, BATCH_CLIENTS))
        one_client_s = asyncio.run(_batches(api.base, batches))
        busy_rss = api.rss_mb()
    rate, p50_ms, p99_ms = measured
    return {
        "workload": "w4",
        "system": "conveyor" if backend == "pg-redis" else f"conveyor-{backend}",
        "clients": clients,
        "seconds": seconds,
        "load_generator": "wrk" if shutil.which("wrk") else "httpx",
        "post_jobs_per_s": round(rate),
        "post_latency_p50_ms": round(p50_ms, 1),
        "post_latency_p99_ms": round(p99_ms, 1),
        "batch_clients": BATCH_CLIENTS,
        "batch_jobs_per_s": round(batches * 1000 / batch_s),
        "batch_one_client_jobs_per_s": round(batches * 1000 / one_client_s),
        "api_rss_idle_mb": idle_rss,
        "api_rss_after_mb": busy_rss,
    }


def suite(quick: bool) -> list[dict[str, object]]:
    if quick:
        return [run("pg-redis", clients=10, seconds=2, batches=2)]
    return [run("pg-redis", clients=50, seconds=10, batches=20)]


def _wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["pg-redis", "pg", "sqlite"], default="pg-redis")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.backend, args.clients, args.seconds, args.batches)))


if __name__ == "__main__":
    main()
