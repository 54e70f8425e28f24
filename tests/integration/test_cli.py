"""The command line, run as users run it."""

from __future__ import annotations

import json
import subprocess
import sys

from conveyor import State
from tests.conftest import ROOT, Backend

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
