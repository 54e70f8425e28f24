"""The defaults workload alone, printed as a few lines: systems as a new user runs them, with
the settings their own docs show first (Conveyor: ``conveyor worker --app ... --processes 2``
and nothing else), draining a backlog of no-op jobs with a plain ``def`` handler and an
``async def`` one.

    python -m bench.defaults [jobs=10000] [systems=conveyor,conveyor-pg,conveyor-sqlite]
                             [kinds=sync,async] [cap_s=120] [results=FILE] [tuned=1]

``results``: also append each measurement to FILE as a JSON line, as the suite does;
``tuned=1``: also measure each system's W1 (its most favourable configuration) on the same
backlog, the reference the report's defaults table and issue 18's targets compare with —
``python -m bench.report RESULTS --defaults FILE`` puts that run beside the published one.

Prints, per system and handler kind its docs show, jobs/s from the workers' launch to the last
finish, jobs/s from the first start, and how long after launch the first job started. The same
measurement as ``python -m bench --workloads defaults`` (one run each, no results file).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from bench.systems import available
from bench.workloads import measure

CONVEYOR = "conveyor,conveyor-pg,conveyor-sqlite"


def line(result: dict[str, object]) -> str:
    """One measurement as the probe has always printed it."""
    head = f"{result['system']:<16} {str(result.get('kind', '')):<6}"
    if result.get("workload") == "w1":
        head = f"{result['system']:<16} tuned "
    if "error" in result:
        return f"{head} failed: {result['error']}"
    if result["capped"]:
        head += f" capped at {result['cap_s']} s with {result['completed']:,} done:"
    return (
        f"{head} {result['per_s_from_launch']:8,} jobs/s from launch"
        f" {result['per_s']:8,} from the first start"
        f"   first job {result['startup_s']:.2f} s after launch"
    )


def main() -> None:
    options = dict(arg.partition("=")[::2] for arg in sys.argv[1:])
    systems = available()
    names = options.get("systems", CONVEYOR).split(",")
    known = {"jobs", "systems", "kinds", "cap_s", "results", "tuned"}
    unknown = set(options) - known or set(names) - set(systems)
    if unknown:
        raise SystemExit(f"unknown: {', '.join(sorted(unknown))}\n{__doc__}")
    jobs, cap_s = int(options.get("jobs", 10_000)), float(options.get("cap_s", 120))
    results = Path(options["results"]) if options.get("results") else None
    plan: list[tuple[str, str, dict[str, object]]] = []
    for name in names:
        for kind in options.get("kinds", "sync,async").split(","):
            if kind in systems[name].handlers:  # else its docs show no such handler
                plan.append((name, "defaults", {"jobs": jobs, "cap_s": cap_s, "kind": kind}))
        if options.get("tuned") == "1" and systems[name].handlers:
            plan.append((name, "w1", {"jobs": jobs, "cap_s": min(cap_s, 60.0)}))
    for name, workload, params in plan:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            try:
                result = measure(systems[name], workload, Path(tmp), **params)  # type: ignore[arg-type]
            except Exception as exc:  # one failure is printed, the others still run
                result = {"workload": workload, "system": name, **params,
                          "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
        result = {"rep": 0, "at": time.time(), **result}
        if results is not None:
            with results.open("a") as out:
                out.write(json.dumps(result) + "\n")
        print(line(result), flush=True)


if __name__ == "__main__":
    main()
