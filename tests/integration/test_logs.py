"""Log lines of real processes: one line per job event with the job's fields, in JSON and in
text; stop signals that say what they wait for; no secret value anywhere in a log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import Conveyor
from conveyor.core.states import State
from tests.apps import logs as log_jobs
from tests.conftest import ROOT, Backend, WorkerProcess, wait_for

APP = "tests.apps.logs:app"
CARD = "4111222233334444"  # the secret: declared in secret_fields, put in messages
FIELDS = ("job_id", "job_type", "queue", "attempt", "worker_id")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _app(backend: Backend) -> Conveyor:
    app = backend.app()
    app.registry = log_jobs.app.registry
    return app


def _json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """Every line of the log, each one JSON object (json.loads fails the test otherwise)."""
    text = worker.log_path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _events(lines: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("job_id") == job_id and "event" in line]


def _state(app: Conveyor, job_id: str) -> State:
    return app.get(job_id).state


def _started(backend: Backend, job_id: str) -> bool:
    return (backend.marks / f"started-{job_id}").exists()


def test_retry_then_fail_in_json(backend: Backend) -> None:
    app = _app(backend)
    worker = backend.worker(app=APP, CONVEYOR_LOG_FORMAT="json", CONVEYOR_LOG_LEVEL="debug")
    job = app.enqueue("charge", {"card": CARD, "amount": 12})
    wait_for(lambda: _state(app, job.id) is State.FAILED, timeout=30, what="the job to fail")
    assert worker.stop() == 0

    lines = _json_lines(worker)
    for line in lines:
        assert RFC3339_UTC.match(line["timestamp"]), line
        assert {"level", "logger", "message"} <= line.keys()
    events = _events(lines, job.id)
    assert [(e["event"], e["attempt"]) for e in events] == [
        ("started", 1), ("retrying", 1), ("started", 2), ("retrying", 2),
        ("started", 3), ("failed", 3),
    ]  # fmt: skip
    worker_ids = {e["worker_id"] for e in events}
    assert len(worker_ids) == 1 and worker_ids != {""}
    for e in events:
        assert (e["job_type"], e["queue"], e["logger"]) == ("charge", "default", "conveyor.worker")
        assert e["job_id"] in e["message"] and f"attempt {e['attempt']}" in e["message"]
    retrying, failed = events[1], events[-1]
    assert retrying["level"] == "INFO" and retrying["delay_s"] >= 0
    assert retrying["error_type"] == "Declined" and "duration_s" in retrying
    assert failed["level"] == "WARNING" and failed["error_type"] == "Declined"
    assert failed["error_message"] == "card *** declined for 12"
    assert "Declined: card *** declined" in failed["traceback"]  # DEBUG adds the traceback
    # ctx.logger lines carry the same fields
    own = [line for line in lines if line["logger"] == "conveyor.job"]
    assert [line["attempt"] for line in own] == [1, 2, 3]
    assert all(line[f] == failed[f] for line in own for f in FIELDS if f != "attempt")
    assert own[0]["message"].endswith("charging 12 to card ***")
    assert CARD not in worker.log_path.read_text()


def test_retry_then_fail_in_text(sqlite_backend: Backend) -> None:
    app = _app(sqlite_backend)
    worker = sqlite_backend.worker(app=APP, CONVEYOR_LOG_FORMAT="text", CONVEYOR_LOG_LEVEL="DEBUG")
    job = app.enqueue("charge", {"card": CARD, "amount": 12})
    wait_for(lambda: _state(app, job.id) is State.FAILED, timeout=30, what="the job to fail")
    assert worker.stop() == 0

    text = worker.log_path.read_text()
    assert CARD not in text
    lines = text.splitlines()
    expected = [(1, "started"), (1, "retrying in"), (2, "started"), (2, "retrying in"),
                (3, "started"), (3, "failed after")]  # fmt: skip
    for attempt, what in expected:
        label = f"job {job.id} (charge, queue default, attempt {attempt}, worker "
        assert any(label in line and f") {what} " in f"{line} " for line in lines), what
    assert re.search(
        r" WARNING conveyor\.worker: .*failed after [\d.]+ s: Declined: card \*\*\*", text
    )
    assert re.search(r" INFO conveyor\.worker: .*retrying in [\d.]+ s after Declined", text)
    assert re.search(r" INFO conveyor\.job: .*\): charging 12 to card \*\*\*", text)
    assert "Traceback (most recent call last)" in text  # the traceback, at DEBUG


def test_an_isolated_jobs_own_lines_carry_the_fields_and_mask_secrets(
    sqlite_backend: Backend,
) -> None:
    app = _app(sqlite_backend)
    worker = sqlite_backend.worker(app=APP)  # not a terminal: JSON by default
    job = app.enqueue("charge_isolated", {"card": CARD})
    wait_for(lambda: _state(app, job.id) is State.FAILED, timeout=30, what="the job to fail")
    assert worker.stop() == 0
    lines = _json_lines(worker)
    own = next(line for line in lines if line["logger"] == "conveyor.job")
    assert own["job_id"] == job.id and own["job_type"] == "charge_isolated"
    assert own["message"].endswith("isolated charge to card ***") and own["worker_id"]
    failed = _events(lines, job.id)[-1]
    assert (failed["event"], failed["error_message"]) == ("failed", "card *** declined")
    assert CARD not in worker.log_path.read_text()


def test_a_canceled_job_logs_canceled(sqlite_backend: Backend) -> None:
    app = _app(sqlite_backend)
    worker = sqlite_backend.worker(app=APP)
    job = app.enqueue("long", {"seconds": 30})
    wait_for(lambda: _started(sqlite_backend, job.id), timeout=30, what="the job to start")
    app.cancel(job.id)
    wait_for(lambda: _state(app, job.id) is State.CANCELED, what="the job to stop")
    assert worker.stop() == 0
    (canceled,) = [e for e in _events(_json_lines(worker), job.id) if e["event"] != "started"]
    assert canceled["event"] == "canceled" and canceled["level"] == "INFO"
    assert {f: canceled[f] for f in ("job_type", "queue", "attempt")} == {
        "job_type": "long", "queue": "default", "attempt": 1,
    }  # fmt: skip


def test_sigterm_says_what_it_waits_for_then_hands_back(db_backend: Backend) -> None:
    app = _app(db_backend)
    worker = db_backend.worker(app=APP, CONVEYOR_GRACE_SECONDS="1")
    job = app.enqueue("long", {"seconds": 30})
    wait_for(lambda: _started(db_backend, job.id), timeout=30, what="the job to start")
    assert worker.stop() == 0
    lines = _json_lines(worker)
    messages = [line["message"] for line in lines]
    assert (
        "stopping: waiting up to 1 s for 1 running job(s); Ctrl-C again (or a second SIGTERM) "
        "to hand them back now"
    ) in messages
    assert "grace period of 1 s over: handing back 1 running job(s)" in messages
    (back,) = [e for e in _events(lines, job.id) if e["event"] == "handed_back"]
    assert back["level"] == "WARNING" and back["attempt"] == 1 and "queued again" in back["message"]
    assert _state(app, job.id) is State.QUEUED


def test_a_second_signal_hands_running_jobs_back_at_once(sqlite_backend: Backend) -> None:
    app = _app(sqlite_backend)
    worker = sqlite_backend.worker(app=APP, CONVEYOR_GRACE_SECONDS="60")
    job = app.enqueue("long", {"seconds": 60})
    wait_for(lambda: _started(sqlite_backend, job.id), timeout=30, what="the job to start")
    worker.signal(signal.SIGINT)
    wait_for(lambda: "waiting up to 60 s" in worker.log(), what="the waiting line")
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 0  # not the 60 s grace
    lines = _json_lines(worker)
    assert "stopping now: handing back 1 running job(s)" in [line["message"] for line in lines]
    assert [e["event"] for e in _events(lines, job.id)] == ["started", "handed_back"]
    assert _state(app, job.id) is State.QUEUED


def _own_group(backend: Backend, argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A command in a process group of its own, as a shell runs it: Ctrl-C at a terminal
    signals the whole group (``os.killpg``)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", *argv],
            env=backend.env(**env), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def test_one_ctrl_c_at_a_terminal_lets_supervised_jobs_finish(sqlite_backend: Backend) -> None:
    """The terminal signals every process of its group: the children must not count the
    supervisor's forwarded signal as a second Ctrl-C."""
    app = _app(sqlite_backend)
    log = sqlite_backend.tmp / "supervisor.log"
    argv = ["worker", "--app", APP, "--processes", "2"]
    proc = _own_group(sqlite_backend, argv, log, CONVEYOR_GRACE_SECONDS="30")
    try:
        job = app.enqueue("long", {"seconds": 3})
        wait_for(lambda: _started(sqlite_backend, job.id), timeout=30, what="the job to start")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _state(app, job.id) is State.COMPLETED, log.read_text()
    assert "Ctrl-C again" in log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_gives_running_jobs_the_workers_grace(sqlite_backend: Backend) -> None:
    app = _app(sqlite_backend)
    port = _free_port()
    log = sqlite_backend.tmp / "up.log"
    argv = ["up", "--app", APP, "--port", str(port)]
    proc = _own_group(sqlite_backend, argv, log, CONVEYOR_GRACE_SECONDS="30")
    try:
        job = app.enqueue("long", {"seconds": 3})
        wait_for(lambda: _started(sqlite_backend, job.id), timeout=30, what="the job to start")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: up and its worker are one group
        assert proc.wait(40) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _state(app, job.id) is State.COMPLETED, log.read_text()
    assert "waiting up to 30 s for 1 running job(s)" in log.read_text()


def test_warning_level_silences_the_per_job_info_lines(sqlite_backend: Backend) -> None:
    app = _app(sqlite_backend)
    worker = sqlite_backend.worker(app=APP, CONVEYOR_LOG_LEVEL="WARNING")
    done = app.enqueue("long", {"seconds": 0})
    failing = app.enqueue("charge", {"card": CARD, "amount": 1})
    wait_for(lambda: _state(app, failing.id) is State.FAILED, timeout=30, what="the failure")
    assert _state(app, done.id) is State.COMPLETED
    assert worker.stop() == 0
    lines = _json_lines(worker)
    assert {line["level"] for line in lines} <= {"WARNING", "ERROR", "CRITICAL"}
    assert [e["event"] for e in _events(lines, failing.id)] == ["failed"]
    assert _events(lines, done.id) == []


@pytest.mark.parametrize("command", ["worker", "scheduler", "api", "up"])
def test_an_invalid_log_format_is_one_line(sqlite_backend: Backend, command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", command, "--app", APP],
        env=sqlite_backend.env(CONVEYOR_LOG_FORMAT="xml"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "CONVEYOR_LOG_FORMAT" in line and "'json'" in line


def test_the_lost_workers_jobs_are_logged_by_who_recovers_them(db_backend: Backend) -> None:
    app = _app(db_backend)
    doomed = db_backend.worker(app=APP)
    job = app.enqueue("long", {"seconds": 60})
    wait_for(lambda: _started(db_backend, job.id), timeout=30, what="the job to start")
    doomed.signal(signal.SIGKILL)
    doomed.wait()
    rescuer = db_backend.worker(app=APP)
    wait_for(lambda: _state(app, job.id) is State.FAILED, timeout=30, what="the rescue")
    assert rescuer.stop() == 0
    (lost,) = _events(_json_lines(rescuer), job.id)
    assert (lost["event"], lost["state"], lost["logger"]) == (
        "worker_lost", "failed", "conveyor.maintenance",
    )  # fmt: skip
    assert lost["worker_id"] and lost["worker_id"] != "" and lost["attempt"] == 1


def test_the_api_logs_in_the_same_format_in_every_process(sqlite_backend: Backend) -> None:
    port = _free_port()
    api = sqlite_backend.worker(
        "--port", str(port), "--workers", "2", command="api", app=APP, CONVEYOR_LOG_FORMAT="json"
    )
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="the API")
        for _ in range(4):
            _get(f"http://127.0.0.1:{port}/healthz")
        wait_for(lambda: "uvicorn.access" in api.log(), what="an access line")
    finally:
        api.stop()
    lines = _json_lines(api)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and all("/healthz" in line["message"] for line in access)


def _get(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_default_level_lines_from_the_worker_the_api_and_the_scheduler(
    sqlite_backend: Backend,
) -> None:
    """At the default level (INFO): the worker says started and completed; an API process says
    what a request did to a job; a scheduler says what each fire enqueued."""
    app = _app(sqlite_backend)
    worker = sqlite_backend.worker(app=APP, CONVEYOR_LOG_FORMAT="json")
    done = app.enqueue("long", {"seconds": 0})
    wait_for(lambda: _state(app, done.id) is State.COMPLETED, timeout=30, what="the job")
    port = _free_port()
    api = sqlite_backend.worker("--port", str(port), command="api", app=APP,
                                CONVEYOR_LOG_FORMAT="json")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(f"{base}/healthz"), timeout=30, what="the API")
    parked = app.enqueue("long", {"seconds": 0}, queue="parked")  # no worker serves it
    assert httpx.post(f"{base}/jobs/{parked.id}/cancel").status_code == 200
    assert httpx.post(f"{base}/jobs/{parked.id}/retry").status_code == 200
    scheduler = sqlite_backend.worker(command="scheduler", app="tests.apps.periodic:app",
                                      CONVEYOR_LOG_FORMAT="json")  # fmt: skip
    wait_for(lambda: any(line.get("event") == "scheduled" for line in _json_lines(scheduler)),
             timeout=30, what="a fire's line")  # fmt: skip
    assert worker.stop() == 0 and scheduler.stop() == 0
    api.stop()  # uvicorn ends on SIGTERM by the signal's default action

    assert [e["event"] for e in _events(_json_lines(worker), done.id)] == ["started", "completed"]
    api_events = _events(_json_lines(api), parked.id)
    assert [(e["event"], e["level"], e["logger"]) for e in api_events] == [
        ("canceled", "INFO", "conveyor.client"),
        ("retried", "INFO", "conveyor.client"),
    ]
    assert all(e["queue"] == "parked" and e["job_type"] == "long" for e in api_events)
    fire = next(line for line in _json_lines(scheduler) if line.get("event") == "scheduled")
    assert fire["job_type"] == "tick" and fire["schedule"] == "tick" and fire["job_id"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
