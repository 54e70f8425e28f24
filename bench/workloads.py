"""W1–W3 and the defaults workload, the same for every system: enqueue, start the workers,
read the ledger."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.env import Machine, Processes, Servers, wait_until, worker_env
from bench.ledger import Ledger
from bench.peers.base import Handler, Kind, System, Workload


@dataclass
class Bench:
    """One measurement's system, servers, ledger and worker processes."""

    system: System
    servers: Servers
    ledger: Ledger
    procs: Processes

    def launch(self, workload: Workload) -> float:
        return self.start(self.system.workers(workload))

    def start(self, workers: list[list[str]]) -> float:
        """Start the worker processes; the wall-clock time just before the first."""
        launched = time.time()
        for argv in workers:
            self.procs.start(argv)
        return launched

    def wait_for(self, n: int, timeout: float) -> bool:
        return wait_until(lambda: self.ledger.count() >= n, timeout, self.procs.check)

    def wait_sampling_rss(self, n: int, timeout: float) -> tuple[bool, float]:
        """``wait_for``, also sampling the workers' memory every 0.25 s: (done, largest
        process's peak RSS in MiB)."""
        peak = [0.0]
        next_sample = [0.0]

        def check() -> None:
            self.procs.check()
            now = time.monotonic()
            if now >= next_sample[0]:
                peak[0] = max(peak[0], self.procs.rss_mb()[0])
                next_sample[0] = now + 0.25

        done = wait_until(lambda: self.ledger.count() >= n, timeout, check)
        return done, peak[0]

    def drained_at(self, n: int, ledger_last: float) -> float:
        """The n-th job's terminal time: the system's own durable record when it has one."""
        found: list[float] = []

        def ready() -> bool:
            at = self.system.drained(n)
            if at is not None:
                found.append(at)
            return bool(found)

        if not self.system.records_finish:
            return ledger_last
        if not wait_until(ready, 30, self.procs.check):
            raise RuntimeError(f"{self.system.name}: the ledger has {n} runs, its store fewer")
        return max(found[0], ledger_last)


def measure(system_cls: type[System], workload: str, tmp: Path, **params: Any) -> dict[str, Any]:
    servers = Servers(tmp)
    servers.fresh()
    ledger = Ledger(tmp / "ledger")
    system = system_cls(servers)
    procs: Processes | None = None
    try:
        system.setup()
        own = system.quickstart_env() if workload == "defaults" else system.worker_env()
        env = worker_env(servers, ledger.path) | own
        procs = Processes(env, tmp / f"{system.name}.log")
        bench = Bench(system, servers, ledger, procs)
        machine = Machine()
        result = WORKLOADS[workload](bench, **params)
        result["machine"] = machine.summary()
    finally:
        if procs is not None:
            procs.stop()
        system.close()
        servers.drop()
    return {"workload": workload, "system": system.name, **params, **result}


def throughput(
    bench: Bench, jobs: int, cap_s: float, kind: Kind = "noop", single: int = 1000
) -> dict[str, Any]:
    """W1 (noop) and W3 (sleep): enqueue, then drain with the workers using both cores."""
    system = bench.system
    single = min(single, jobs // 10)
    started = time.perf_counter()
    for _ in range(single):
        system.enqueue_one(kind, 0.0)
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    system.enqueue_bulk(kind, jobs - single)
    bulk_s = time.perf_counter() - started
    bench.servers.analyze()
    workload: Workload = "throughput" if kind == "noop" else "io"
    return {
        "kind": kind,
        **drain(bench, jobs, cap_s, system.workers(workload)),
        "config": system.config(workload),
        "enqueue_one_per_s": round(single / single_s) if single else None,
        "enqueue_bulk_per_s": round((jobs - single) / bulk_s),
    }


def defaults(bench: Bench, jobs: int, cap_s: float = 60, kind: Handler = "sync") -> dict[str, Any]:
    """The defaults workload: a backlog of no-ops with a ``def`` (sync) or ``async def``
    handler, drained by workers started as the system's quick-start starts them. Its headline
    is the rate from the workers' launch: users start workers, then wait."""
    system = bench.system
    if kind not in system.handlers:
        raise ValueError(
            f"{system.name}: its docs show no {kind} handler (it has "
            f"{', '.join(system.handlers) or 'no quick-start here'})"
        )
    system.enqueue_quickstart(kind, jobs)
    bench.servers.analyze()
    return {
        "kind": kind,
        **drain(bench, jobs, cap_s, system.quickstart(kind)),
        "config": system.quickstart_config(kind),
    }


def drain(bench: Bench, jobs: int, cap_s: float, workers: list[list[str]]) -> dict[str, Any]:
    """Start the workers on a queued backlog of ``jobs`` and time them until the last is
    done (or ``cap_s`` passes): rates from the first start and from the launch."""
    system = bench.system
    commands = bench.servers.redis_commands()
    launched = bench.start(workers)
    done, peak_rss = bench.wait_sampling_rss(jobs, cap_s)
    entries = bench.ledger.entries()
    first = min((e.t_start for e in entries), default=launched)
    if done:
        last = bench.drained_at(jobs, max(e.t_end for e in entries))
        ran = jobs
    else:
        last, ran = time.time(), len(entries)
    commands = bench.servers.redis_commands() - commands
    return {
        "completed": ran,
        "capped": not done,
        "per_s": round(ran / (last - first)) if ran else 0,
        "per_s_from_launch": round(ran / (last - launched)) if ran else 0,
        "startup_s": round(first - launched, 3),
        "busy_rss_mb": peak_rss,
        "redis_commands_per_job": round(commands / ran, 1)
        if ran and "redis" in system.uses
        else None,
    }


def latency(bench: Bench, rate: int, seconds: float, threads: int = 4) -> dict[str, Any]:
    """W2: warm idle workers, jobs enqueued one by one at a steady rate (open loop)."""
    system = bench.system
    bench.launch("latency")
    total = int(rate * seconds)
    with ThreadPoolExecutor(threads) as pool:
        # Warm-up through the same threads, a burst of one job per thread at a time: each
        # thread's client opens its connections now, not during the measurement.
        warm = 5 * threads
        for _ in range(5):
            list(pool.map(lambda _: system.enqueue_one("noop", time.time()), range(threads)))
        if not bench.wait_for(warm, 90):
            raise RuntimeError(f"{system.name}: warm-up jobs did not run")
        time.sleep(1.0)
        idle_rss, idle_rss_total = bench.procs.rss_mb()
        bench.ledger.reset()
        t0 = time.perf_counter()
        futures = []
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(_timed_enqueue, system))
        calls = [f.result() for f in futures]  # how long each enqueue call took, ms
        enqueue_s = time.perf_counter() - t0
    # A system that fell behind gets 15 s more, then is reported with what it finished.
    done = bench.wait_for(total, 15)
    entries = sorted(bench.ledger.entries(), key=lambda e: e.t_enq)
    starts = [(e.t_start - e.t_enq) * 1000 for e in entries]
    ends = [(e.t_end - e.t_enq) * 1000 for e in entries]
    tenth = max(1, len(starts) // 10)
    return {
        "rate": rate,
        "completed": len(entries),
        "capped": not done,
        "config": system.config("latency"),
        "enqueue_rate": round(total / enqueue_s),
        "idle_rss_mb": idle_rss,
        "idle_rss_total_mb": idle_rss_total,
        **percentiles("start_ms", starts),
        **percentiles("finish_ms", ends),
        # Part of every start: the enqueue call itself (the client's work and its round trips).
        **percentiles("enqueue_call_ms", calls),
        # A backlog shows as later jobs waiting longer than early ones.
        "lag_growth_ms": round(
            statistics.median(starts[-tenth:]) - statistics.median(starts[:tenth]), 2
        )
        if starts
        else None,
    }


def _timed_enqueue(system: System) -> float:
    """Enqueue one no-op stamped with the time now; how long the call took, in ms."""
    t_enq = time.time()
    system.enqueue_one("noop", t_enq)
    return (time.time() - t_enq) * 1000


def percentiles(prefix: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{prefix}_p50": None, f"{prefix}_p95": None, f"{prefix}_p99": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {f"{prefix}_p50": at(0.50), f"{prefix}_p95": at(0.95), f"{prefix}_p99": at(0.99)}


WORKLOADS = {
    "w1": lambda bench, **p: throughput(bench, kind="noop", **p),
    "w2": latency,
    "w3": lambda bench, **p: throughput(bench, kind="sleep", single=0, **p),
    "defaults": defaults,
}
