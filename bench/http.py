"""W4: POST /jobs with 50 concurrent clients against one `conveyor api` process, and
POST /jobs/batch with 1,000 jobs per request.

    python -m bench.http --backend pg-redis --seconds 10 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.throughput import ROOT, _database, _drop
from conveyor.store import make_engine
from conveyor.store.schema import upgrade


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


async def _batches(base: str, requests: int) -> float:
    body = {"jobs": [{"type": "noop", "payload": {}}] * 1000}
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        started = time.perf_counter()
        for _ in range(requests):
            r = await http.post("/jobs/batch", json=body)
            if r.status_code != 202:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        return time.perf_counter() - started


def run(backend: str, clients: int, seconds: float, batches: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        db_url, redis_url = _database(backend, Path(tmp))
        try:
            engine = make_engine(db_url)
            upgrade(engine)
            engine.dispose()
            port = _free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
            env.update(CONVEYOR_DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
            env["CONVEYOR_REDIS_PREFIX"] = f"bench{uuid.uuid4().hex[:6]}"
            if redis_url:
                env["CONVEYOR_REDIS_URL"] = redis_url
            api = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "--log-level", "WARNING", "api",
                 "--app", "bench.jobs:app", "--port", str(port)],
                env=env, cwd=ROOT,
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            try:
                _wait_healthy(base)
                n, latencies = asyncio.run(_single(base, clients, seconds))
                batch_s = asyncio.run(_batches(base, batches))
            finally:
                api.terminate()
                api.wait(30)
        finally:
            _drop(db_url)
    latencies.sort()
    return {
        "workload": "W4 HTTP",
        "system": f"conveyor ({backend})",
        "clients": clients,
        "post_jobs_per_s": round(n / seconds),
        "post_latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "post_latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "batch_jobs_per_s": round(batches * 1000 / batch_s),
    }


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
