"""The command line, run as users run it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sqlite3
import subprocess
import sys
import time
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, DatabaseUnavailable, State
from conveyor.scheduler import BackedOffIO, Backoff, Scheduler, scheduler_for
from tests.apps import periodic
from tests.conftest import ROOT, Backend

package_version = _version("conveyor")

APP = ["--app", "tests.apps.jobs:app"]


def conveyor(backend: Backend, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=backend.env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_enqueue_wait_status_cancel_retry(sqlite_backend: Backend) -> None:
    b = sqlite_backend
    b.worker()
    done = conveyor(b, "enqueue", "staged", *APP, "--json", '{"pause": 0.1}', "--wait")
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and '{"done": "yes"}' in done.stdout
    job_id = done.stdout.split()[1]
    status = conveyor(b, "status", job_id, "--json")
    assert status.returncode == 0
    data = json.loads(status.stdout)
    assert data["state"] == "completed" and data["stage"] == "embedding"
    assert [a["outcome"] for a in data["attempts"]] == ["completed"]

    failed = conveyor(b, "enqueue", "permanent", *APP, "--wait")
    assert failed.returncode == 1 and "bad input, never retry" in failed.stdout
    failed_id = failed.stdout.split()[1]
    retried = conveyor(b, "retry", failed_id)
    assert retried.returncode == 0 and "queued" in retried.stdout

    delayed = conveyor(b, "enqueue", "add", *APP, "--json", '{"a": 1}', "--delay", "1h")
    delayed_id = delayed.stdout.strip()
    assert "no live worker" not in delayed.stderr  # the worker serves "default"
    parked = conveyor(b, "enqueue", "add", *APP, "--json", '{"a": 1}', "--queue", "parked")
    assert parked.returncode == 0 and len(parked.stdout.split()) == 1  # stdout: the id alone
    assert "warning: no live worker serves queue 'parked'" in parked.stderr
    canceled = conveyor(b, "cancel", delayed_id)
    assert canceled.returncode == 0 and "canceled" in canceled.stdout
    listing = conveyor(b, "jobs", "--state", "canceled")
    assert delayed_id[:8] in listing.stdout
    assert b.app().get(delayed_id).state is State.CANCELED


def test_cli_errors_are_one_clear_line(sqlite_backend: Backend) -> None:
    b = sqlite_backend
    bad_json = conveyor(b, "enqueue", "add", *APP, "--json", "{nope")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    unknown = conveyor(b, "enqueue", "nope", *APP)
    assert unknown.returncode == 1 and "unknown job type 'nope'" in unknown.stderr
    assert "add" in unknown.stderr and "Traceback" not in unknown.stderr
    invalid = conveyor(b, "enqueue", "add", *APP, "--json", '{"a": "x"}')
    assert invalid.returncode == 1 and "a:" in invalid.stderr
    missing = conveyor(b, "status", "01a216b0-0000-7000-8000-000000000000")
    assert missing.returncode == 1 and "no job with id" in missing.stderr
    setting = conveyor(b, "status", "x", CONVEYOR_LEASE_SECONDS="soon")
    assert setting.returncode == 1 and "CONVEYOR_LEASE_SECONDS" in setting.stderr
    assert "Traceback" not in setting.stderr
    no_app = conveyor(b, "worker", "--app", "no_such_module:app")
    assert no_app.returncode == 2 and "cannot import" in no_app.stderr
    bad_queues = conveyor(b, "worker", *APP, "--queues", "a=0")
    assert bad_queues.returncode == 1 and "weight" in bad_queues.stderr


def test_settings_lists_every_variable(sqlite_backend: Backend) -> None:
    out = conveyor(sqlite_backend, "settings")
    assert out.returncode == 0
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "LEASE_SECONDS",
        "HEARTBEAT_SECONDS",
        "RECONCILE_SECONDS",
    ):
        assert f"CONVEYOR_{name}" in out.stdout


def test_db_upgrade_creates_the_schema(tmp_path, sqlite_backend: Backend) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = conveyor(sqlite_backend, "db", "upgrade", CONVEYOR_DATABASE_URL=url)
    from conveyor.store.schema import head_revision

    assert out.returncode == 0 and f"revision {head_revision()}" in out.stdout


# -- rough edges a newcomer hits (issue 17) ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_listings_never_cut_ids_and_print_json(sqlite_backend: Backend) -> None:
    b = sqlite_backend
    made = [conveyor(b, "enqueue", "add", *APP, "--json", '{"a": 1}', "--delay", "1h")]
    made.append(conveyor(b, "enqueue", "add", *APP, "--json", '{"a": 2}', "--delay", "1h"))
    ids = [m.stdout.strip() for m in made]
    table = conveyor(b, "jobs", "--limit", "1", COLUMNS="80")
    assert table.returncode == 0, table.stderr
    assert ids[1] in table.stdout and f"--cursor {ids[1]}" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    listed = json.loads(conveyor(b, "jobs", "--json", COLUMNS="80").stdout)
    assert [j["id"] for j in listed["items"]] == ids[::-1] and listed["next_cursor"] is None
    assert listed["items"][0]["state"] == "scheduled" and listed["items"][0]["payload"] == {
        "a": 2,
        "b": 0,
    }

    app = Conveyor(b.settings())
    app.registry, app.schedules = periodic.app.registry, dict(periodic.app.schedules)
    b.apps.append(app)
    scheduler_for(app).sync()
    schedules = conveyor(b, "schedules", "--app", "tests.apps.periodic:app", "--json")
    assert schedules.returncode == 0, schedules.stderr
    names = {s["name"] for s in json.loads(schedules.stdout)}
    assert names == set(periodic.app.schedules)
    narrow = conveyor(b, "schedules", "--app", "tests.apps.periodic:app", COLUMNS="80")
    assert all(name in narrow.stdout for name in names)

    settings = json.loads(
        conveyor(b, "settings", "--json", CONVEYOR_API_TOKENS="hunter2", CONVEYOR_APP="x:y").stdout
    )
    shown = {s["variable"]: s["value"] for s in settings}
    assert shown["CONVEYOR_APP"] == "x:y" and shown["CONVEYOR_API_TOKENS"] == "***"
    assert "CONVEYOR_APP=" in conveyor(b, "settings").stdout


def test_an_unreachable_database_is_one_line_naming_it(sqlite_backend: Backend) -> None:
    port = _free_port()
    url = f"postgresql://conveyor:hunter2@127.0.0.1:{port}/jobs"
    commands = [
        ["db", "upgrade"],
        ["worker", *APP],
        ["up", *APP, "--port", str(_free_port())],
        ["scheduler", *APP],
        ["status", "01a216b0-0000-7000-8000-000000000000"],
        ["jobs"],
        ["enqueue", "add", *APP, "--json", '{"a": 1}'],
    ]
    for args in commands:
        out = conveyor(sqlite_backend, *args, CONVEYOR_DATABASE_URL=url, COLUMNS="80")
        assert out.returncode == 1, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, (args, out.stderr)
        assert f"postgresql://conveyor:***@127.0.0.1:{port}/jobs" in lines[0], lines[0]
        assert "hunter2" not in out.stderr + out.stdout and "Conveyor is up" not in out.stdout


def test_read_only_commands_create_no_database_and_name_it(
    tmp_path: Path, sqlite_backend: Backend
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = sqlite_backend.env()
    del env["CONVEYOR_DATABASE_URL"]  # the default: ./conveyor.db
    for args in (["status", "01a216b0-0000-7000-8000-000000000000"], ["jobs"]):
        out = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 1 and str(elsewhere / "conveyor.db") in out.stderr, out.stderr
    assert not (elsewhere / "conveyor.db").exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    out = conveyor(sqlite_backend, "jobs", CONVEYOR_DATABASE_URL=f"sqlite:///{empty}")
    assert out.returncode == 1 and f"tables are missing in sqlite:///{empty}" in out.stderr


def test_up_checks_the_port_first_and_app_errors_say_what_to_do(
    tmp_path: Path, sqlite_backend: Backend
) -> None:
    b = sqlite_backend
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        env = b.env()
        del env["CONVEYOR_DATABASE_URL"]
        out = subprocess.run(
            [sys.executable, "-m", "conveyor", "up", "--demo", "--port", port],
            env=env, cwd=fresh, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1 and f"port {port} on 127.0.0.1 is in use" in out.stderr
    assert "Conveyor is up" not in out.stdout and not (fresh / "conveyor.db").exists()

    no_app = conveyor(b, "worker")
    assert no_app.returncode == 2 and "conveyor.demo:app" in no_app.stderr
    up_no_app = conveyor(b, "up")
    assert up_no_app.returncode == 2 and "conveyor.demo:app" in up_no_app.stderr
    missing = conveyor(b, "worker", "--app", "tests.apps.jobs:missing")
    assert missing.returncode == 2 and "has no attribute 'missing'" in missing.stderr
    version = conveyor(b, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"conveyor {package_version}"


def test_the_scheduler_backs_off_while_the_database_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Down:
        """A schedule store whose database is gone."""

        def __getattr__(self, name: str) -> Any:
            raise DatabaseUnavailable("the database is unreachable")

    calls: list[float] = []

    def step() -> None:
        calls.append(time.monotonic())
        raise DatabaseUnavailable("the database is unreachable")

    async def run(seconds: float) -> None:
        stopping = asyncio.Event()
        backoff = Backoff(first_s=0.2, cap_s=30)
        scheduler = Scheduler({}, Down(), None, poll_s=0.2, backoff=backoff)  # type: ignore[arg-type]
        io = BackedOffIO(backoff, stopping)

        async def reconciler() -> None:  # what the reconciler's loop does with its io
            while not stopping.is_set():
                with contextlib.suppress(DatabaseUnavailable):
                    await io(step)
                await asyncio.sleep(0.05)

        asyncio.get_running_loop().call_later(seconds, stopping.set)
        started = time.monotonic()
        await asyncio.gather(scheduler.loop(stopping), reconciler())
        assert time.monotonic() - started < seconds + 1  # stopping cuts a backoff short

    with caplog.at_level(logging.WARNING, logger="conveyor.scheduler"):
        asyncio.run(run(3.0))
    warnings = [r for r in caplog.records if "scheduler pass failed" in r.getMessage()]
    assert 2 <= len(warnings) <= 5, [r.getMessage() for r in warnings]  # not 6 a second
    assert len(calls) <= 6, calls
    assert "next try in" in warnings[-1].getMessage()
