"""Secrets stay hidden wherever a job or a schedule is shown: the API's job and schedule
routes, the event stream and the command line mask secret fields by name and their values
wherever they appear (error messages, tracebacks, progress messages, results)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.scheduler import scheduler_for
from tests.api.conftest import api_for
from tests.apps import hostile
from tests.conftest import ROOT, Backend, wait_for

APP = "tests.apps.hostile:app"
PASSWORD = "hunter2-correct-horse"
SECRETS = {
    "secretKey": "sk-live-0123456789",
    "pin": "8675309",
    "database_url": "postgresql://app:pw-4242@db.internal/prod",
}


def app_for(backend: Backend) -> Conveyor:
    app = Conveyor(backend.settings())
    app.registry = hostile.app.registry
    backend.apps.append(app)
    return app


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} shown in {text[:2000]}"


def finished(api: TestClient, job_id: str, state: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(f"/jobs/{job_id}").json()
        return body if body["state"] == state else None

    result: dict[str, Any] = wait_for(check, timeout=30, what=f"job {job_id} to be {state}")
    return result


def test_secret_values_are_masked_in_errors_tracebacks_messages_and_results(
    db_backend: Backend,
) -> None:
    db_backend.worker(app=APP)
    with api_for(app_for(db_backend)) as api:
        failing = api.post(
            "/jobs", json={"type": "login", "payload": {"user": "bob", "password": PASSWORD}}
        ).json()["id"]
        leaking = api.post("/jobs", json={"type": "leaky", "payload": SECRETS}).json()["id"]

        failed = finished(api, failing, "failed")
        assert failed["payload"] == {"user": "bob", "password": "***"}
        assert failed["error"]["message"] == "could not log in as bob with ***"
        assert "***" in failed["error"]["traceback"]
        assert [a["error"]["message"] for a in failed["attempts"]] == [
            "could not log in as bob with ***"
        ] * 2
        assert all("***" in a["error"]["traceback"] for a in failed["attempts"])

        done = finished(api, leaking, "completed")
        assert done["payload"] == dict.fromkeys(SECRETS, "***")
        assert done["message"] == "connecting to *** with key ***"
        assert done["result"] == {"said": "pin ***", "nested": [{"url": "***"}],
                                  "access_token": "***"}  # fmt: skip

        served = [
            api.get(f"/jobs/{failing}").text,
            api.get(f"/jobs/{leaking}").text,
            api.get("/jobs").text,
            api.get(f"/jobs/{failing}/events").text,
            api.get(f"/jobs/{leaking}/events").text,
            api.post(f"/jobs/{leaking}/cancel").text,  # 409: already completed
        ]
        assert_hidden("\n".join(served), PASSWORD, *SECRETS.values())
        retried = api.post(f"/jobs/{failing}/retry")
        assert retried.status_code == 200
        assert_hidden(retried.text, PASSWORD)


def test_schedule_payloads_are_masked_on_every_route(db_backend: Backend) -> None:
    app = app_for(db_backend)
    with api_for(app) as api:
        payload = {"user": "bob", "password": PASSWORD}
        body = {"name": "nightly", "type": "login", "cron": "0 2 * * *", "payload": payload}
        responses = [
            api.post("/schedules", json=body),
            api.get("/schedules"),
            api.get("/schedules/nightly"),
            api.patch("/schedules/nightly", json={"cron": "0 3 * * *"}),
            api.post("/schedules/nightly/pause"),
            api.post("/schedules/nightly/resume"),
        ]
        for response in responses:
            assert response.status_code in (200, 201), response.text
            assert_hidden(response.text, PASSWORD)
            shown = response.json()
            for schedule in shown if isinstance(shown, list) else [shown]:
                assert schedule["payload"] == {"user": "bob", "password": "***"}
        assert scheduler_for(app).store.get("nightly")["payload"] == payload  # stored as given


def conveyor(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=backend.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_line_masks_payloads_results_errors_and_messages(
    sqlite_backend: Backend,
) -> None:
    b = sqlite_backend
    b.worker(app=APP)
    waited = conveyor(b, "enqueue", "leaky", "--app", APP, "--json", json.dumps(SECRETS), "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "completed" in waited.stdout and "pin ***" in waited.stdout
    assert_hidden(waited.stdout + waited.stderr, *SECRETS.values())
    leaky_id = waited.stdout.split()[1]

    payload = json.dumps({"user": "bob", "password": PASSWORD})
    failed = conveyor(b, "enqueue", "login", "--app", APP, "--json", payload, "--wait")
    assert failed.returncode == 1 and "with ***" in failed.stdout, failed.stdout
    assert_hidden(failed.stdout + failed.stderr, PASSWORD)
    login_id = failed.stdout.split()[1]

    for job_id, secrets in ((leaky_id, SECRETS.values()), (login_id, [PASSWORD])):
        for extra in ([], ["--json"]):
            shown = conveyor(b, "status", job_id, "--app", APP, *extra)
            assert shown.returncode == 0, shown.stderr
            assert "***" in shown.stdout
            assert_hidden(shown.stdout, *secrets)
    as_json = json.loads(conveyor(b, "status", login_id, "--app", APP, "--json").stdout)
    assert as_json["payload"] == {"user": "bob", "password": "***"}
    without_app = conveyor(b, "status", leaky_id, "--json")  # by name alone: pin is declared
    assert_hidden(without_app.stdout, SECRETS["secretKey"], SECRETS["database_url"])
