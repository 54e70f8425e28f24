"""The benchmark suite's defaults workload (issue 18): every system as its quick-start runs it.

Figures are not checked (the suite reports them): that each quick-start command names a real
entry point and real objects, that a small run of the workload completes, and that the report
renders its table from a results file."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.env import Servers
from bench.report import write_report
from bench.systems import available
from bench.try_one import value

ROOT = Path(__file__).resolve().parents[2]
# The handler kinds each system's docs show (a system not installed is left out).
HANDLERS = {
    "conveyor": {"sync", "async"},
    "conveyor-pg": {"sync", "async"},
    "conveyor-sqlite": {"sync", "async"},
    "rq": {"sync", "async"},
    "celery": {"sync"},
    "dramatiq": {"sync", "async"},
    "arq": {"async"},
    "saq": {"sync", "async"},
    "huey": {"sync"},
    "procrastinate": {"sync", "async"},
    "pgqueuer": {"async"},
}
TARGET = re.compile(r"^(?:--app=)?(bench\.peers\.\w+)(?:[.:](\w+))?$")


def test_every_system_runs_the_handler_kinds_its_docs_show() -> None:
    systems = available()
    assert {name: set(cls.handlers) for name, cls in systems.items() if cls.handlers} == {
        name: kinds for name, kinds in HANDLERS.items() if name in systems
    }
    for no_quickstart in ("rq-simple", "naive"):  # tuned-only adapters, when installed
        assert no_quickstart not in systems or not systems[no_quickstart].handlers


#: The systems whose packages this environment has: Conveyor's always; the peers with the
#: ``bench`` extra (the test command installs only ``dev``).
def _installed(name: str) -> bool:
    cls = available().get(name)
    if cls is None:
        return False
    try:
        for package in cls.packages:
            importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


INSTALLED = sorted(name for name in HANDLERS if _installed(name))


@pytest.mark.parametrize("name", INSTALLED)
def test_quickstart_commands_name_real_entry_points_and_objects(name: str, tmp_path: Path) -> None:
    cls = available()[name]
    system = cls(Servers(tmp_path))  # quickstart() needs no server
    for handler in cls.handlers:
        argvs = system.quickstart(handler)
        assert argvs
        for argv in argvs:
            if argv[0] == sys.executable:
                assert argv[1] == "-m" and importlib.util.find_spec(argv[2]) is not None
            else:
                assert os.access(argv[0], os.X_OK), argv[0]  # a console script, installed
            # The app, settings or module each names (RQ's names only its queue: a job names
            # its function).
            for match in filter(None, map(TARGET.match, argv[1:])):
                module = importlib.import_module(match[1])
                assert match[2] is None or hasattr(module, match[2]), match[0]
        assert not system.quickstart_config(handler).startswith("/")


def test_conveyor_quickstart_is_processes_2_and_nothing_else(tmp_path: Path) -> None:
    system = available()["conveyor"](Servers(tmp_path))
    for handler in ("sync", "async"):
        (argv,) = system.quickstart(handler)
        assert Path(argv[0]).name == "conveyor"
        assert argv[1:] == ["worker", "--app", "bench.peers.conveyor_bench:app", "--processes", "2"]


def test_try_one_reads_text_parameters() -> None:
    assert (value("300"), value("0.5"), value("async")) == (300, 0.5, "async")


def _line(system: str, kind: str, from_launch: int, **extra: Any) -> dict[str, Any]:
    return {
        "rep": 0,
        "workload": "defaults",
        "system": system,
        "jobs": 10_000,
        "cap_s": 30,
        "kind": kind,
        "completed": 10_000,
        "capped": False,
        "per_s": from_launch * 2,
        "per_s_from_launch": from_launch,
        "startup_s": 0.8,
        "busy_rss_mb": 80.0,
        "redis_commands_per_job": None,
        "config": "conveyor worker --processes 2",
        **extra,
    }


def test_report_renders_the_defaults_table_before_w1(tmp_path: Path) -> None:
    results, out = tmp_path / "results.jsonl", tmp_path / "docs" / "benchmarks.md"
    lines = [
        _line("conveyor", "sync", 1_300),
        _line("conveyor", "async", 2_500),
        _line("conveyor-sqlite", "sync", 900, capped=True, completed=4_000),
        {
            "rep": 0,
            "workload": "w1",
            "system": "conveyor",
            "jobs": 10_000,
            "cap_s": 20,
            "kind": "noop",
            "completed": 10_000,
            "capped": False,
            "per_s": 30_000,
            "per_s_from_launch": 10_000,
            "startup_s": 0.7,
            "config": "conveyor worker",
        },
    ]
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out.parent.mkdir()
    write_report(results, out, findings=False)
    text = out.read_text()
    heading = "## Defaults: quick-start settings, 10,000 no-op jobs"
    assert heading in text and text.index(heading) < text.index("## W1")
    assert (
        "| Conveyor (PostgreSQL + Redis) | `def` | 1,300 | 2,600 | 0.80 | 13% of 10,000 |" in text
    )
    assert (
        "| Conveyor (PostgreSQL + Redis) | `async def` | 2,500 | 5,000 | 0.80 | 25% of 10,000 |"
        in text
    )
    assert "| Conveyor (SQLite) | `def` | 900 |" in text and "1 capped at 30 s (4,000 done)" in text
    assert "| Conveyor (PostgreSQL + Redis) | defaults (`def`, `async def`) | " in text


def test_report_takes_the_defaults_from_a_run_of_their_own_with_its_targets(
    tmp_path: Path,
) -> None:
    """The published run's W1 is not the reference for defaults measured later on another
    machine: ``--defaults`` brings a run of its own, whose W1 rows are the reference, and
    issue 18's targets are judged from it."""
    published, run = tmp_path / "results.jsonl", tmp_path / "defaults.jsonl"
    out = tmp_path / "docs" / "benchmarks.md"
    old_w1 = {"rep": 0, "workload": "w1", "system": "conveyor", "jobs": 10_000, "cap_s": 20,
              "kind": "noop", "completed": 10_000, "capped": False, "per_s": 30_000,
              "per_s_from_launch": 10_000, "startup_s": 0.7, "config": "conveyor worker"}  # fmt: skip
    machine = {"load_before": 0.1, "busy_shares": 0.5, "cpu_probe_us": 23.5}
    new_w1 = old_w1 | {"per_s": 10_000, "per_s_from_launch": 4_000, "at": 1.8e9}
    new = [
        _line("conveyor", "sync", 3_000, per_s=5_200, machine=machine, at=1.8e9),
        _line("conveyor", "async", 3_000, per_s=5_600, machine=machine, at=1.8e9),
        _line("conveyor-pg", "sync", 3_000, per_s=5_400, machine=machine, at=1.8e9),
        _line("conveyor-pg", "async", 3_000, per_s=5_500, machine=machine, at=1.8e9),
        new_w1,
    ]
    published.write_text(json.dumps(old_w1) + "\n")
    run.write_text("".join(json.dumps(line) + "\n" for line in new))
    out.parent.mkdir()
    write_report(published, out, findings=False, defaults=run)
    text = out.read_text()
    assert "`docs/benchmarks/defaults.jsonl`" in text and "23.5 µs" in text
    assert (out.parent / "benchmarks" / "defaults.jsonl").read_text() == run.read_text()
    assert "| 75% of 4,000 |" in text  # this run's W1 from launch, not the published 10,000
    targets = text[text.index("## Targets") :]
    assert (
        "| Defaults (PostgreSQL + Redis, `def`): at least half the tuned W1 rate "
        "| 5,200/s vs 10,000/s tuned (52%) | met |" in targets
    )
    assert "| Defaults, `def`: Redis dispatch no slower than database dispatch " in targets
    assert "| 5,200/s vs 5,400/s | met |" in targets  # within 5%
    assert "| Defaults (PostgreSQL + Redis): a `def` job costs at most twice" in targets
    assert "| Defaults: first job within 0.4 s of launch | median 0.80 s" in targets
    assert "**missed**" in targets  # 0.8 s, and 5,200 < 10,000


@pytest.mark.timeout(300)
def test_quick_suite_runs_the_defaults_workload(tmp_path: Path) -> None:
    results, report = tmp_path / "results.jsonl", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--systems",
            "conveyor-pg,conveyor-sqlite",
            "--workloads",
            "defaults",
            "--results",
            str(results),
            "--report",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert {(x["system"], x["kind"]) for x in lines} == {
        (system, kind) for system in ("conveyor-pg", "conveyor-sqlite") for kind in HANDLERS[system]
    }
    for x in lines:
        assert "error" not in x and x["completed"] == x["jobs"] and not x["capped"]
        assert 0 < x["per_s_from_launch"] <= x["per_s"] and x["startup_s"] > 0
    assert "## Defaults: quick-start settings, 300 no-op jobs" in report.read_text()
