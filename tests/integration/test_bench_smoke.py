"""The benchmark suite, run small, so that it keeps working: every workload once for
Conveyor on its backends, then the report. Figures are not checked here (bench/ reports
them); that each measurement ran to completion and was reported is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)  # the whole quick suite, in one test
def test_quick_suite_runs_every_workload_and_writes_the_report(tmp_path: Path) -> None:
    results, report = tmp_path / "results.jsonl", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--systems", "conveyor,conveyor-sqlite",
         "--workloads", "w1,w2,w3,w4,w5,w6", "--results", str(results), "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [x for x in lines if "error" in x] == []
    seen = {(x["workload"], x["system"]) for x in lines}
    for workload in ("w1", "w2", "w3"):
        assert {(workload, "conveyor"), (workload, "conveyor-sqlite")} <= seen
    assert {("w4", "conveyor"), ("w5", "conveyor"), ("w6", "conveyor")} <= seen
    assert {("w2floor", "redis-pop"), ("w2floor", "durable-claim")} <= seen
    for x in lines:
        if x["workload"] in ("w1", "w3"):
            assert x["completed"] == x["jobs"] and not x["capped"] and x["per_s"] > 0
        if x["workload"] == "w2":
            assert x["completed"] == x["rate"] * x["seconds"]
            assert 0 < x["start_ms_p50"] <= x["finish_ms_p99"]
    w5 = next(x for x in lines if x["workload"] == "w5")
    assert w5["redis_stream_entries"] <= 10_000 and w5["seq_scans"] == []
    w6 = next(x for x in lines if x["workload"] == "w6")
    assert w6["bulk_drain_statements_per_job"] > 0 and w6["single_statements_per_job"] > 0
    text = report.read_text()
    for heading in (
        "## W1",
        "## W2",
        "### W2's floor",
        "## W3",
        "## W4",
        "## W5",
        "## W6",
        "## Targets",
    ):
        assert heading in text
