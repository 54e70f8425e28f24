"""A worker's start (issue 18: its first job within 0.4 s of launch): what it imports, its
garbage collector, and the package's lazy names. The schema check's single statement is in
test_schema.py; bench/startup.py times the whole start."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.core.gctune import GEN0_THRESHOLD
from tests.apps import startup
from tests.conftest import ROOT, Backend, wait_for

#: What a worker has no use for: the HTTP API, its server and client, the dashboard's
#: templates, the command line's tables, migrations (Alembic: only when the schema is behind)
#: and SQLAlchemy's ORM (only for an enqueue in a caller's Session).
NOT_IN_A_WORKER = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "jinja2",
    "rich",
    "alembic",
    "sqlalchemy.orm",
    "conveyor.api",
    "conveyor.dashboard",
    "conveyor.http",
)


def _first_job_state(b: Backend, *args: str) -> dict[str, Any]:
    """Launch ``conveyor worker`` on one queued ``report`` job: the state of the worker
    process that ran it."""
    app = Conveyor(b.settings())
    app.registry = startup.app.registry
    b.apps.append(app)
    app.enqueue("report")
    worker = b.worker(*args, app="tests.apps.startup:app")
    found = wait_for(
        lambda: list(b.marks.glob("startup-*.json")),
        timeout=30,
        what=f"the first job (worker log: {worker.log_path})",
    )
    state: dict[str, Any] = json.loads(found[0].read_text())
    return state


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_worker_imports_nothing_it_does_not_run_on(backend: Backend, processes: str) -> None:
    state = _first_job_state(backend, "--processes", processes)
    modules = set(state["modules"])
    assert not [m for m in NOT_IN_A_WORKER if m in modules]
    if backend.redis_url is None:  # redis-py imports OpenTelemetry's SDK when it is installed
        assert not [m for m in modules if m.startswith("opentelemetry")]
    # Its start frozen out of the collector's passes, then the worker's own threshold.
    assert state["frozen"] > 10_000 and state["gen0_threshold"] == GEN0_THRESHOLD


def test_other_commands_give_the_collector_its_usual_threshold_back() -> None:
    from click.testing import CliRunner

    from conveyor.cli.main import STARTUP_GEN0_THRESHOLD, cli

    usual = gc.get_threshold()
    gc.set_threshold(STARTUP_GEN0_THRESHOLD, *usual[1:])  # as ``main`` starts every command
    try:
        assert CliRunner().invoke(cli, ["settings"]).exit_code == 0
        assert gc.get_threshold() == usual
    finally:
        gc.set_threshold(*usual)


def _imports(code: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {"modules": set(json.loads(out.stdout.splitlines()[-1])), "stdout": out.stdout}


def test_the_package_imports_its_names_on_first_use() -> None:
    bare = _imports("import conveyor, conveyor.cli.main")["modules"]
    assert "sqlalchemy" not in bare and "pydantic" not in bare and "conveyor.app" not in bare
    used = _imports(
        "from conveyor import Conveyor, State, JobView\n"
        "import conveyor\n"
        "assert conveyor.Conveyor is Conveyor and 'Settings' in dir(conveyor)\n"
        "try:\n    conveyor.nope\nexcept AttributeError:\n    print('no nope')"
    )
    assert "conveyor.app" in used["modules"] and "no nope" in used["stdout"]


def test_tracing_does_not_import_opentelemetry_until_the_process_does() -> None:
    quiet = _imports(
        "from conveyor.core import tracing\n"
        "assert not tracing.recording() and tracing.attempt_started(None, 'w') is None\n"
        "with tracing.enqueue_span() as span:\n    assert span.carrier is None"
    )["modules"]
    assert not [m for m in quiet if m.startswith("opentelemetry")]
    used = _imports(
        "from conveyor.core import tracing\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "assert tracing.recording()"
    )["modules"]
    assert "opentelemetry.trace" in used


def test_a_worker_refuses_a_schema_newer_than_itself_in_one_line(
    tmp_path: Path, sqlite_backend: Backend
) -> None:
    import sqlite3

    path = tmp_path / "conveyor.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE conveyor_alembic_version SET version_num = '9999'")
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", "worker", "--app", "tests.apps.startup:app"],
        env=sqlite_backend.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert f"sqlite:///{path}" in lines[0] and "revision 9999, newer than this Conveyor" in lines[0]
