"""The markdown report and charts, from a results file of JSON lines.

    python -m bench.report bench/results/RUN.jsonl [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.env import PG_ADMIN, REDIS_BASE, ROOT
from bench.systems import available

Lines = list[dict[str, Any]]
INTRO = ROOT / "bench" / "INTRO.md"
FINDINGS = ROOT / "bench" / "FINDINGS.md"


def write_report(
    results: Path, out: Path, findings: bool = True, defaults: Path | None = None
) -> None:
    """The report from ``results``; ``findings`` adds bench/FINDINGS.md, the hand-written
    reading of the published run (not of a smoke run). ``defaults``: a run of its own for the
    defaults tables (with the W1 rows of that run it is compared with), when the published
    run has none or is older."""
    lines = _read(results)
    assets = out.parent / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    if results.resolve() != (assets / "results.jsonl").resolve():
        shutil.copyfile(results, assets / "results.jsonl")
    defaults_lines = lines
    if defaults is not None:
        defaults_lines = _read(defaults)
        if defaults.resolve() != (assets / "defaults.jsonl").resolve():
            shutil.copyfile(defaults, assets / "defaults.jsonl")
    systems = available()
    order = [name for name in systems
             if any(line["system"] == name for line in lines + defaults_lines)]
    label = {name: systems[name].label for name in order}
    parts = [INTRO.read_text().rstrip() + "\n", _machine(), _versions(order, systems)]
    parts.append(_targets(lines, defaults_lines))
    if findings and FINDINGS.exists():
        parts.append(FINDINGS.read_text().rstrip() + "\n")
    parts.append(_defaults(defaults_lines, order, label, separate=defaults is not None))
    for jobs in sorted({line["jobs"] for line in lines if line["workload"] == "w1"}):
        rows = [x for x in lines if x["workload"] == "w1" and x["jobs"] == jobs]
        parts.append(_throughput(f"W1 — throughput, {jobs:,} no-op jobs", rows, order, label))
        if jobs == 10_000:
            parts.append(_chart(rows, order, label, "per_s", "jobs/s (first start → last "
                                "terminal state)", assets / "w1.png", log=True))
    for rate in sorted({line["rate"] for line in lines if line["workload"] == "w2"}):
        rows = [x for x in lines if x["workload"] == "w2" and x["rate"] == rate]
        parts.append(_latency(rate, rows, order, label))
        if rate == 200:
            parts.append(_chart(rows, order, label, "start_ms_p50", "enqueue → start p50, ms "
                                "(lower is better)", assets / "w2.png", log=True,
                                second="start_ms_p99"))
    parts.append(_floor([x for x in lines if x["workload"] == "w2floor"]))
    w3 = [x for x in lines if x["workload"] == "w3"]
    if w3:
        parts.append(_throughput("W3 — I/O-bound: 5,000 jobs of 10 ms sleep", w3, order, label))
        parts.append(_chart(w3, order, label, "per_s", "jobs/s", assets / "w3.png", log=True))
    parts.append(_single("W4 — HTTP (one `conveyor api` process)", [x for x in lines
                         if x["workload"] == "w4"], W4_FIELDS))
    parts.append(_single("W5 — scale (one million queued jobs)", [x for x in lines
                         if x["workload"] == "w5"], W5_FIELDS))
    parts.append(_w6([x for x in lines if x["workload"] == "w6"], lines, order, label))
    parts.append(_configs(lines, order, label))
    parts.append(_errors(lines))
    out.write_text("\n".join(p for p in parts if p).rstrip() + "\n")


def _med(rows: Lines, key: str) -> tuple[float, float, float] | None:
    values = [r[key] for r in rows if r.get(key) is not None and "error" not in r]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _cell(rows: Lines, key: str, digits: int = 0, spread: bool = True) -> str:
    m = _med(rows, key)
    if m is None:
        return "–"
    text = _fmt(m[0], digits)
    if spread and len([r for r in rows if r.get(key) is not None]) > 1:
        text += f" ({_fmt(m[1], digits)}–{_fmt(m[2], digits)})"
    return text


def _by_system(rows: Lines, order: list[str]) -> list[tuple[str, Lines]]:
    grouped: dict[str, Lines] = defaultdict(list)
    for r in rows:
        grouped[r["system"]].append(r)
    return [(name, grouped[name]) for name in order if name in grouped]


def _throughput(title: str, rows: Lines, order: list[str], label: dict[str, str]) -> str:
    best = _med([r for r in rows if r["system"] == "conveyor"], "per_s")
    out = [f"## {title}\n",
           "Median of the runs (min–max). *jobs/s*: first job start → last job's terminal "
           "state (Conveyor: the last finished row committed in its database; peers: the last "
           "handler return). *from launch* includes starting the worker processes.\n",
           "| system | jobs/s | from launch | vs Conveyor | bulk enqueue/s | one-by-one "
           "enqueue/s | Redis commands/job | peak worker RSS MiB | runs |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, rs in _by_system(rows, order):
        ok = [r for r in rs if "error" not in r]
        capped = [r for r in ok if r.get("capped")]
        m = _med(ok, "per_s")
        ratio = ""
        if best and m and name != "conveyor":
            ratio = (f"{best[0] / m[0]:.1f}× slower" if m[0] <= best[0]
                     else f"**{m[0] / best[0]:.1f}× faster**")
        note = f"; {len(capped)} capped at {capped[0]['cap_s']} s ({capped[0]['completed']:,} done)" \
            if capped else ""
        out.append(
            f"| {label[name]} | {_cell(ok, 'per_s')} | {_cell(ok, 'per_s_from_launch', spread=False)} "
            f"| {ratio} | {_cell(ok, 'enqueue_bulk_per_s', spread=False)} "
            f"| {_cell(ok, 'enqueue_one_per_s', spread=False)} "
            f"| {_cell(ok, 'redis_commands_per_job', 2, spread=False)} "
            f"| {_cell(ok, 'busy_rss_mb', 0, spread=False)} | {len(ok)}/{len(rs)}{note} |"
        )
    return "\n".join(out) + "\n"


HANDLER = {"sync": "`def`", "async": "`async def`"}


def _read(path: Path) -> Lines:
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]


def _defaults(lines: Lines, order: list[str], label: dict[str, str], separate: bool) -> str:
    """Defaults: each system as its quick-start runs it, a table per backlog size, rows
    system x handler kind, beside the same system's tuned W1 rate from launch."""
    out = []
    if separate and lines:
        probes = [x["machine"]["cpu_probe_us"] for x in lines
                  if isinstance(x.get("machine"), dict) and "cpu_probe_us" in x["machine"]]
        when = time.strftime("%Y-%m-%d", time.gmtime(max(x.get("at", 0) for x in lines)))
        speed = (f"; `sum(range(1000))` took {statistics.median(probes):.1f} µs there "
                 "(`cpu_probe_us`; a lower figure is a faster machine)" if probes else "")
        out += [f"*The defaults tables come from a run of their own ({when}, "
                f"`docs/benchmarks/defaults.jsonl`), with the W1 runs of that same run as the "
                f"tuned reference{speed}.*\n"]
    for jobs in sorted({x["jobs"] for x in lines if x["workload"] == "defaults"}):
        rows = [x for x in lines if x["workload"] == "defaults" and x["jobs"] == jobs]
        tuned = [x for x in lines if x["workload"] == "w1" and x["jobs"] == jobs]
        out += [f"## Defaults: quick-start settings, {jobs:,} no-op jobs\n",
                "Each system started as its own docs show first (the commands are under *How "
                "each system ran*), draining the backlog with a plain `def` and an `async def` "
                "no-op handler where its docs show each. *from launch*: the workers' launch → "
                "the last job's terminal state, the headline (users start workers, then wait); "
                "*from first start*: the first job's start → the last; *first job*: seconds "
                "from launch to the first job's start; *of tuned*: the rate from launch as a "
                "share of the same system's W1 (its most favourable configuration) in this "
                "run. Median of the runs (min–max).\n",
                "| system | handler | jobs/s from launch | jobs/s from first start | first job, s "
                "| of tuned (W1 from launch) | runs |", "|---|---|---|---|---|---|---|"]
        for name, rs in _by_system(rows, order):
            for kind in ("sync", "async"):
                kr = [r for r in rs if r.get("kind") == kind]
                if not kr:
                    continue
                ok = [r for r in kr if "error" not in r]
                capped = [r for r in ok if r.get("capped")]
                note = (f"; {len(capped)} capped at {capped[0]['cap_s']} s "
                        f"({capped[0]['completed']:,} done)" if capped else "")
                m = _med(ok, "per_s_from_launch")
                w1 = _med([r for r in tuned if r["system"] == name], "per_s_from_launch")
                share = f"{m[0] / w1[0]:.0%} of {w1[0]:,.0f}" if m and w1 else "–"
                out.append(f"| {label[name]} | {HANDLER[kind]} | {_cell(ok, 'per_s_from_launch')} "
                           f"| {_cell(ok, 'per_s')} | {_cell(ok, 'startup_s', 2)} | {share} "
                           f"| {len(ok)}/{len(kr)}{note} |")
        out.append("")
    return "\n".join(out)


def _latency(rate: int, rows: Lines, order: list[str], label: dict[str, str]) -> str:
    out = [f"## W2 — latency at {rate} jobs/s\n",
           f"Warm idle workers; {rate} jobs a second enqueued one by one for "
           f"{rows[0]['seconds']} s (open loop, 4 enqueuing threads). Milliseconds from just "
           "before the enqueue call to the handler's start and end (median of the runs' "
           "percentiles). *lag growth*: median start delay of the last tenth of the jobs minus "
           "the first tenth — a growing backlog shows here. *enqueue call*: how long the "
           "enqueue call itself took (part of every start). *machine busy*: the share of both "
           "cores busy during the run, everything included, and the load average before it — "
           "what explains a figure that does not reproduce.\n",
           "| system | start p50 | start p95 | start p99 | finish p50 | finish p99 | lag growth "
           "ms | enqueue call p50 / p99 | enqueued/s | completed | idle worker RSS MiB "
           "| machine busy (load before) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    expected = int(rate * rows[0]["seconds"])
    for name, rs in _by_system(rows, order):
        ok = [r for r in rs if "error" not in r]
        done = _med(ok, "completed")
        out.append(
            f"| {label[name]} | {_cell(ok, 'start_ms_p50', 1, False)} "
            f"| {_cell(ok, 'start_ms_p95', 1, False)} | {_cell(ok, 'start_ms_p99', 1, False)} "
            f"| {_cell(ok, 'finish_ms_p50', 1, False)} | {_cell(ok, 'finish_ms_p99', 1, False)} "
            f"| {_cell(ok, 'lag_growth_ms', 1, False)} "
            f"| {_cell(ok, 'enqueue_call_ms_p50', 1, False)} / "
            f"{_cell(ok, 'enqueue_call_ms_p99', 1, False)} "
            f"| {_cell(ok, 'enqueue_rate', 0, False)} "
            f"| {_fmt(done[0]) if done else '–'} / {expected:,} "
            f"| {_cell(ok, 'idle_rss_mb', 0, False)} | {_busy(ok)} |"
        )
    return "\n".join(out) + "\n"


def _busy(rows: Lines) -> str:
    """The machine's median busy share during these runs, and the load before them."""
    seen = [r["machine"] for r in rows if isinstance(r.get("machine"), dict)]
    if not seen:
        return "–"
    busy = statistics.median(m["busy_share"] for m in seen)
    load = statistics.median(m["load_before"] for m in seen)
    return f"{busy:.0%} ({load:.1f})"


FLOOR_LABEL = {
    "redis-pop": "LPUSH → BRPOP (nothing durable: Huey's, RQ's core)",
    "durable-claim": "INSERT + commit, XADD → XREADGROUP → UPDATE claim + commit (Conveyor's)",
}


def _floor(rows: Lines) -> str:
    if not rows:
        return ""
    out = ["### W2's floor on this machine\n",
           "The same 200 jobs a second through a few lines of raw psycopg and redis-py "
           "(`bench/floor.py`): an idle consumer process, no framework. A design whose job "
           "starts only after PostgreSQL has recorded the claim cannot go below the second "
           "line; the Redis-only peers sit near the first.\n",
           "| design | start p50 | start p95 | start p99 |", "|---|---|---|---|"]
    for name in ("redis-pop", "durable-claim"):
        ok = [r for r in rows if r["system"] == name and "error" not in r]
        if ok:
            out.append(f"| {FLOOR_LABEL[name]} | {_cell(ok, 'start_ms_p50', 2, False)} "
                       f"| {_cell(ok, 'start_ms_p95', 2, False)} "
                       f"| {_cell(ok, 'start_ms_p99', 2, False)} |")
    return "\n".join(out) + "\n"


W4_FIELDS = [
    ("post_jobs_per_s", "`POST /jobs`, 50 connections: requests/s", 0),
    ("post_latency_p50_ms", "`POST /jobs` latency p50, ms", 1),
    ("post_latency_p99_ms", "`POST /jobs` latency p99, ms", 1),
    ("batch_jobs_per_s", "`POST /jobs/batch`, 1,000 jobs a request, 4 clients: jobs/s", 0),
    ("batch_one_client_jobs_per_s", "`POST /jobs/batch`, one client, back to back: jobs/s", 0),
    ("api_rss_idle_mb", "API process RSS idle, MiB", 0),
    ("api_rss_after_mb", "API process RSS after the load, MiB", 0),
]
W5_FIELDS = [
    ("enqueue_per_s", "enqueue 1,000,000 (client, 1,000 a transaction): jobs/s", 0),
    ("redis_used_mb", "Redis memory used, MiB", 1),
    ("redis_stream_entries", "ids in the queue's Redis stream (the dispatch window)", 0),
    ("api_rss_idle_mb", "API process RSS, MiB", 0),
    ("list_first_page_ms_p50", "`GET /jobs?state=queued` first page p50, ms", 1),
    ("list_first_page_ms_p99", "… p99, ms", 1),
    ("list_10k_deep_ms_p50", "a page 10,000 jobs deep by cursor p50, ms", 1),
    ("list_10k_deep_ms_p99", "… p99, ms", 1),
    ("list_page_10000_ms_p50", "page 10,000 (500,000 jobs deep) by cursor p50, ms", 1),
    ("list_page_10000_ms_p99", "… p99, ms", 1),
    ("queues_ms_p50", "`GET /queues` p50, ms", 1),
    ("queues_ms_p99", "… p99, ms", 1),
    ("metrics_ms_p50", "`GET /metrics` p50, ms", 1),
    ("metrics_ms_p99", "… p99, ms", 1),
    ("worker_first_job_s", "worker launch → first job finished, s", 2),
]


def _single(title: str, rows: Lines, fields: list[tuple[str, str, int]]) -> str:
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return ""
    out = [f"## {title}\n", "| measure | median (min–max) |", "|---|---|"]
    for key, text, digits in fields:
        out.append(f"| {text} | {_cell(ok, key, digits)} |")
    scans = {tuple(r.get("seq_scans", [])) for r in ok if "seq_scans" in r}
    if scans:
        out.append(f"| list queries whose plan scans the table | "
                   f"{', '.join(sorted({s for t in scans for s in t})) or 'none'} |")
    return "\n".join(out) + "\n"


def _w6(rows: Lines, lines: Lines, order: list[str], label: dict[str, str]) -> str:
    ok = [r for r in rows if "error" not in r]
    out = ["## W6 — resources\n"]
    if ok:
        r = ok[0]
        out += ["Conveyor, counted by the servers (pg_stat_statements on a private PostgreSQL "
                "cluster, Redis INFO commandstats):\n",
                "| path | PostgreSQL statements/job | Redis commands/job |", "|---|---|---|",
                f"| bulk: enqueue 10,000 in transactions of 1,000 | "
                f"{_cell(ok, 'bulk_enqueue_statements_per_job', 3, False)} | "
                f"{_cell(ok, 'bulk_enqueue_redis_commands_per_job', 2, False)} |",
                f"| bulk: drain them (2 worker processes) | "
                f"{_cell(ok, 'bulk_drain_statements_per_job', 3, False)} | "
                f"{_cell(ok, 'bulk_redis_commands_per_job', 2, False)} (enqueue + drain) |",
                f"| one at a time at 200/s to idle workers (enqueue + run) | "
                f"{_cell(ok, 'single_statements_per_job', 3, False)} | "
                f"{_cell(ok, 'single_redis_commands_per_job', 2, False)} |", "",
                "Most frequent statements while draining the backlog (calls per job):\n", "```"]
        out += [f"{calls:6.3f}  {query}" for calls, query in r.get("bulk_drain_top_statements", [])]
        out += ["```", "", "One at a time:\n", "```"]
        out += [f"{calls:6.3f}  {query}" for calls, query in r.get("single_top_statements", [])]
        out += ["```", ""]
    out += ["Memory of every system's worker processes (largest single process), from W2 (idle, "
            "warm) and W1 (peak while draining 10,000 jobs); Redis commands per job from W1:\n",
            "| system | idle worker RSS MiB | busy worker RSS MiB | Redis commands/job |",
            "|---|---|---|---|"]
    w1 = [x for x in lines if x["workload"] == "w1" and x.get("jobs") == 10_000]
    w2 = [x for x in lines if x["workload"] == "w2"]
    for name in order:
        a = [x for x in w2 if x["system"] == name and "error" not in x]
        b = [x for x in w1 if x["system"] == name and "error" not in x]
        out.append(f"| {label[name]} | {_cell(a, 'idle_rss_mb', 0, False)} "
                   f"| {_cell(b, 'busy_rss_mb', 0, False)} "
                   f"| {_cell(b, 'redis_commands_per_job', 2, False)} |")
    return "\n".join(out) + "\n"


def _default_targets(lines: Lines) -> list[str]:
    """Issue 18's targets, from the defaults run (its own W1 rows are the tuned reference)."""
    def med(workload: str, system: str, key: str, **match: Any) -> float | None:
        rows = [x for x in lines if x["workload"] == workload and x["system"] == system
                and "error" not in x and all(x.get(k) == v for k, v in match.items())]
        m = _med(rows, key)
        return m[0] if m else None

    out = []
    jobs = 10_000
    names = {"conveyor": "PostgreSQL + Redis", "conveyor-pg": "PostgreSQL",
             "conveyor-sqlite": "SQLite"}
    for system, backend in names.items():
        tuned = med("w1", system, "per_s", jobs=jobs)
        for kind in ("sync", "async"):
            got = med("defaults", system, "per_s", jobs=jobs, kind=kind)
            if got is None:
                continue
            if tuned is not None:
                out.append(f"| Defaults ({backend}, {HANDLER[kind]}): at least half the tuned "
                           f"W1 rate | {got:,.0f}/s vs {tuned:,.0f}/s tuned "
                           f"({got / tuned:.0%}) | {'met' if got >= tuned / 2 else '**missed**'} |")
            floor = 5_000 if system == "conveyor-sqlite" else 10_000
            out.append(f"| Defaults ({backend}, {HANDLER[kind]}): at least {floor:,} jobs/s "
                       f"| {got:,.0f}/s | {'met' if got >= floor else '**missed**'} |")
    for kind in ("sync", "async"):
        redis = med("defaults", "conveyor", "per_s", jobs=jobs, kind=kind)
        db = med("defaults", "conveyor-pg", "per_s", jobs=jobs, kind=kind)
        if redis is not None and db is not None:
            out.append(f"| Defaults, {HANDLER[kind]}: Redis dispatch no slower than database "
                       f"dispatch | {redis:,.0f}/s vs {db:,.0f}/s "
                       f"| {'met' if redis >= db * 0.95 else '**missed**'} |")
    for system, backend in names.items():
        sync = med("defaults", system, "per_s", jobs=jobs, kind="sync")
        coro = med("defaults", system, "per_s", jobs=jobs, kind="async")
        if sync and coro:
            out.append(f"| Defaults ({backend}): a `def` job costs at most twice an `async def` "
                       f"one | {coro / sync:.2f}× | {'met' if coro / sync <= 2 else '**missed**'} |")
    starts = [x["startup_s"] for x in lines if x["workload"] == "defaults"
              and x["system"] in names and x.get("startup_s") is not None]
    if starts:
        first = statistics.median(starts)
        out.append(f"| Defaults: first job within 0.4 s of launch | median {first:.2f} s, "
                   f"worst {max(starts):.2f} s | {'met' if first <= 0.4 else '**missed**'} |")
    return out


def _targets(lines: Lines, defaults: Lines) -> str:
    def med(workload: str, system: str, key: str, **match: Any) -> float | None:
        rows = [x for x in lines if x["workload"] == workload and x["system"] == system
                and "error" not in x and all(x.get(k) == v for k, v in match.items())]
        m = _med(rows, key)
        return m[0] if m else None

    def peers(workload: str, key: str, **match: Any) -> dict[str, float]:
        names = {x["system"] for x in lines if x["workload"] == workload}
        found = {n: med(workload, n, key, **match) for n in names if not n.startswith("conveyor")}
        return {n: v for n, v in found.items() if v is not None}

    rows = []

    def check(text: str, ok: bool | None, figure: str) -> None:
        mark = "limit shown" if ok is None else ("met" if ok else "**missed**")
        rows.append(f"| {text} | {figure} | {mark} |")

    c = med("w1", "conveyor", "per_s", jobs=10_000)
    p = peers("w1", "per_s", jobs=10_000)
    best = max(p.items(), key=lambda kv: kv[1]) if p else None
    if c is not None:
        check("W1: Conveyor (PostgreSQL + Redis) ahead of every peer", best is None or c > best[1],
              f"{c:,.0f}/s vs best peer {best[0]} {best[1]:,.0f}/s" if best else f"{c:,.0f}/s")
        check("W1: at least 5,000 jobs/s", c >= 5000, f"{c:,.0f}/s")
        simple = p.get("rq-simple")
        if simple:
            check("W1: 30× RQ SimpleWorker", c >= 30 * simple, f"{c / simple:.1f}×")
    cpg = med("w1", "conveyor-pg", "per_s", jobs=10_000)
    pg_peers = {n: v for n, v in p.items() if n in ("pgqueuer", "procrastinate")}
    if cpg is not None and pg_peers:
        check("W1: Conveyor on PostgreSQL alone ahead of pgqueuer and procrastinate",
              all(cpg > v for v in pg_peers.values()),
              f"{cpg:,.0f}/s vs " + ", ".join(f"{n} {v:,.0f}/s" for n, v in pg_peers.items()))
    cs = med("w1", "conveyor-sqlite", "per_s", jobs=10_000)
    if cs is not None:
        check("W1: SQLite at least 1,000 jobs/s", cs >= 1000, f"{cs:,.0f}/s")
    for key, text in (("start_ms_p50", "p50"), ("start_ms_p99", "p99")):
        c2 = med("w2", "conveyor", key, rate=200)
        p2 = peers("w2", key, rate=200)
        if c2 is not None and p2:
            b2 = min(p2.items(), key=lambda kv: kv[1])
            floor = med("w2floor", "durable-claim", key)
            ok: bool | None = c2 <= b2[1]
            figure = f"{c2:.1f} ms vs {b2[0]} {b2[1]:.1f} ms"
            if not ok and floor is not None and b2[1] < floor:
                ok = None  # the peer is below what a durable claim allows here
                figure += (f"; the durable-claim floor is {floor:.2f} ms: beyond this machine "
                           "for a job claimed in PostgreSQL before it starts")
            check(f"W2 at 200/s: enqueue→start {text} at or below the best peer", ok, figure)
    lag = med("w2", "conveyor", "lag_growth_ms", rate=1000)
    if lag is not None:
        check("W2 at 1,000/s: no backlog growth", lag < 50, f"lag growth {lag:.1f} ms")
    c3 = med("w3", "conveyor", "per_s")
    p3 = peers("w3", "per_s")
    if c3 is not None:
        b3 = max(p3.items(), key=lambda kv: kv[1]) if p3 else None
        check("W3: ahead of every peer", b3 is None or c3 > b3[1],
              f"{c3:,.0f}/s vs best peer {b3[0]} {b3[1]:,.0f}/s" if b3 else f"{c3:,.0f}/s")
        check("W3: at least 3,000 jobs/s", c3 >= 3000, f"{c3:,.0f}/s")
    w4 = med("w4", "conveyor", "post_jobs_per_s")
    if w4 is not None:
        check("W4: ≥ 1,500 `POST /jobs` a second", w4 >= 1500, f"{w4:,.0f}/s")
    w4b = med("w4", "conveyor", "batch_jobs_per_s")
    if w4b is not None:
        check("W4: batch endpoint ≥ 20,000 jobs/s", w4b >= 20000, f"{w4b:,.0f} jobs/s")
    for key, text in (("list_first_page_ms_p99", "first page"),
                      ("list_10k_deep_ms_p99", "10,000 jobs deep"),
                      ("list_page_10000_ms_p99", "page 10,000")):
        v = med("w5", "conveyor", key)
        if v is not None:
            check(f"W5: list p99 ≤ 50 ms, {text}", v <= 50, f"{v:.1f} ms")
    window = med("w5", "conveyor", "redis_stream_entries")
    if window is not None:
        check("W5: Redis holds the dispatch window, not the backlog", window <= 10_000,
              f"{window:,.0f} ids in the stream")
    rows += _default_targets(defaults)
    if not rows:
        return ""
    return "\n".join(["## Targets\n", "| target | measured (medians, same run) | |", "|---|---|---|",
                      *rows]) + "\n"


def _chart(rows: Lines, order: list[str], label: dict[str, str], key: str, title: str,
           path: Path, *, log: bool = False, second: str | None = None) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ""
    names, values, lows, highs, extra = [], [], [], [], []
    for name, rs in _by_system(rows, order):
        m = _med([r for r in rs if not r.get("capped")], key) or _med(rs, key)
        if m is None:
            continue
        names.append(label[name])
        values.append(m[0])
        lows.append(m[0] - m[1])
        highs.append(m[2] - m[0])
        if second:
            s = _med(rs, second)
            extra.append(s[0] if s else 0)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    y = list(range(len(names)))
    colors = ["#d9541e" if n.startswith("Conveyor") else "#4c72b0" for n in names]
    if second:
        ax.barh([i + 0.2 for i in y], extra, height=0.4, color="#bbbbbb", label="p99")
        ax.barh([i - 0.2 for i in y], values, height=0.4, color=colors, label="p50")
        ax.legend()
    else:
        ax.barh(y, values, xerr=[lows, highs], color=colors, capsize=3)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![{title}](benchmarks/{path.name})\n"


def _configs(lines: Lines, order: list[str], label: dict[str, str]) -> str:
    """Each system's worker commands per workload (per handler kind for the defaults, where
    the command differs by kind)."""
    out = ["## How each system ran\n", "| system | workload | workers |", "|---|---|---|"]
    for name in order:
        seen: dict[tuple[str, str], list[str]] = {}
        for x in lines:
            if x["system"] == name and x.get("config"):
                kinds = seen.setdefault((x["workload"], x["config"]), [])
                if x["workload"] == "defaults" and x.get("kind") not in kinds:
                    kinds.append(x["kind"])
        for (workload, config), kinds in seen.items():
            if kinds:
                workload += " (" + ", ".join(HANDLER[k] for k in kinds) + ")"
            out.append(f"| {label[name]} | {workload} | `{config}` |")
    return "\n".join(out) + "\n"


def _errors(lines: Lines) -> str:
    bad = [x for x in lines if "error" in x]
    if not bad:
        return ""
    out = ["## Failed measurements\n"]
    out += [f"- {x['workload']} {x['system']}{' ' + x['kind'] if x.get('kind') else ''} "
            f"(run {x.get('rep')}): {x['error'][:300]}" for x in bad]
    return "\n".join(out) + "\n"


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    mem = next((int(line.split()[1]) / 2**20 for line in
                Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), 0)
    pg = _cmd(["psql", PG_ADMIN, "-Atc", "SHOW server_version"])
    redis_v = _cmd(["redis-cli", "-u", REDIS_BASE, "INFO", "server"])
    redis_v = next((line.split(":")[1] for line in redis_v.splitlines()
                    if line.startswith("redis_version")), "?")
    return "\n".join([
        "## The machine\n",
        f"- measured {time.strftime('%Y-%m-%d')}; {cpu}, {os.cpu_count()} cores, "
        f"{mem:.0f} GiB RAM; {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; PostgreSQL {pg} (fsync and synchronous_commit "
        f"on); Redis {redis_v} (no persistence); every server on this machine, over loopback",
    ]) + "\n"


def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _versions(order: list[str], systems: dict[str, Any]) -> str:
    names: list[str] = []
    for name in order:
        for package in systems[name].packages:
            if package not in names:
                names.append(package)
    for extra in ("matplotlib", "psutil"):
        if extra not in names:
            names.append(extra)
    cells = []
    for package in names:
        try:
            cells.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return "## Versions\n\n" + ", ".join(cells) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--defaults", type=Path, help="a run of its own for the defaults tables")
    args = parser.parse_args()
    write_report(args.results, args.out, defaults=args.defaults)


if __name__ == "__main__":
    main()
