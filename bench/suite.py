"""``python -m bench``: every workload, for Conveyor and the peers, alternating, repeated.

    python -m bench                      # the full suite (about an hour on 2 cores)
    python -m bench --quick              # a smoke run: a few hundred jobs, seconds per system
    python -m bench --systems conveyor,rq-simple --workloads w1,w2 --repeat 3

Each measurement is appended as one JSON line to the results file as soon as it is taken;
the report (markdown + PNG charts) is written from that file at the end, or alone with
``python -m bench.report RESULTS``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.env import ROOT
from bench.systems import available
from bench.workloads import measure

FULL: dict[str, list[dict[str, Any]]] = {
    "w1": [{"jobs": 10_000, "cap_s": 20}, {"jobs": 100_000, "cap_s": 60}],
    "w2": [{"rate": 200, "seconds": 5}, {"rate": 1000, "seconds": 5}],
    "w3": [{"jobs": 5_000, "cap_s": 20}],
}
QUICK: dict[str, list[dict[str, Any]]] = {
    "w1": [{"jobs": 300, "cap_s": 20}],
    "w2": [{"rate": 50, "seconds": 2}],
    "w3": [{"jobs": 200, "cap_s": 20}],
}
# W1 at 100,000 jobs only for systems that did 10,000 at this rate or better (a slower one
# would need minutes per run; its 10,000-job figure is reported instead).
BIG_RUN_MIN_RATE = 2_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    parser.add_argument("--repeat", type=int, help="measurements per system (default 3, quick 1)")
    parser.add_argument("--systems", help="comma-separated names (default: all installed)")
    parser.add_argument("--workloads", default="w1,w2,w3,w4,w5,w6")
    parser.add_argument("--results", type=Path, help="JSON lines file (appended to)")
    parser.add_argument("--report", type=Path, help="markdown report to write")
    args = parser.parse_args(argv)

    systems = available()
    names = args.systems.split(",") if args.systems else list(systems)
    unknown = [n for n in names if n not in systems]
    if unknown:
        parser.error(f"unknown or not installed: {', '.join(unknown)}; have {', '.join(systems)}")
    workloads = args.workloads.split(",")
    repeat = args.repeat or (1 if args.quick else 3)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results = args.results or ROOT / "bench" / "results" / f"{stamp}.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)

    def record(line: dict[str, Any]) -> None:
        with results.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)

    plan = QUICK if args.quick else FULL
    for workload in ("w1", "w2", "w3"):
        if workload not in workloads:
            continue
        for params in plan[workload]:
            chosen = names
            if workload == "w1" and params["jobs"] > 10_000:
                chosen = [n for n in names if _median_rate(results, n) >= BIG_RUN_MIN_RATE]
            _alternate(
                chosen,
                repeat,
                lambda name, rep, w=workload, p=params: _one(systems[name], w, p, rep, record),
            )
    extra: dict[str, Callable[[bool], list[dict[str, Any]]]] = {}
    if "w2" in workloads:
        from bench import floor

        extra["w2floor"] = floor.suite
    if "w4" in workloads:
        from bench import http

        extra["w4"] = http.suite
    if "w5" in workloads:
        from bench import scale

        extra["w5"] = scale.suite
    if "w6" in workloads:
        from bench import resources

        extra["w6"] = resources.suite
    for workload, run in extra.items():
        for rep in range(repeat):
            try:
                for line in run(args.quick):
                    record({"rep": rep, **line})
            except Exception as exc:  # a failed workload is reported, the suite goes on
                traceback.print_exc()
                record(
                    {
                        "workload": workload,
                        "system": "conveyor",
                        "rep": rep,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
            if workload == "w5":
                break  # one million rows once is enough: its figures are medians already
    if args.report or not args.quick:
        from bench.report import write_report

        write_report(results, args.report or ROOT / "docs" / "benchmarks.md",
                     findings=not args.quick)
    print(f"results: {results}", file=sys.stderr)
    return 0


def _alternate(names: list[str], repeat: int, run: Callable[[str, int], None]) -> None:
    """Round-robin over systems, rotating the order each round so that drift in the
    machine's speed falls on all of them alike."""
    for rep in range(repeat):
        k = rep % len(names) if names else 0
        for name in names[k:] + names[:k]:
            run(name, rep)


def _one(
    cls: Any,
    workload: str,
    params: dict[str, Any],
    rep: int,
    record: Callable[[dict[str, Any]], None],
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        try:
            line = measure(cls, workload, Path(tmp), **params)
        except Exception as exc:
            traceback.print_exc()
            line = {
                "workload": workload,
                "system": cls.name,
                **params,
                "error": f"{type(exc).__name__}: {exc}",
            }
    record({"rep": rep, "at": time.time(), **line})


def _median_rate(results: Path, name: str) -> float:
    rates = []
    if results.exists():
        for raw in results.read_text().splitlines():
            line = json.loads(raw)
            if (
                line.get("workload") == "w1"
                and line.get("system") == name
                and line.get("jobs") == 10_000
                and line.get("per_s")
            ):
                rates.append(line["per_s"])
    return statistics.median(rates) if rates else 0.0
