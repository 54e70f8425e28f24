"""/schedules over HTTP: list, inspect, define at run time, change, pause, trigger, delete."""

from __future__ import annotations

from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.scheduler import scheduler_for
from tests.conftest import Backend, wait_for
from tests.integration.test_scheduler import periodic_app


def test_schedules_over_http(db_backend: Backend) -> None:
    app = periodic_app(db_backend)
    scheduler_for(app).sync()
    http = TestClient(create_app(app))

    listed = http.get("/schedules").json()
    assert {s["name"] for s in listed} == {"tick", "slow-skip", "slow-cancel"}
    assert next(s for s in listed if s["name"] == "tick")["source"] == "code"

    created = http.post(
        "/schedules",
        json={"name": "nightly", "type": "slow", "cron": "0 2 * * *", "tz": "Asia/Seoul",
              "payload": {"seconds": 0}, "catch_up": "none"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/schedules/nightly"
    assert created.json()["tz"] == "Asia/Seoul" and created.json()["source"] == "api"
    assert (
        http.post("/schedules", json={"name": "nightly", "type": "slow", "every": 5}).status_code
        == 409
    )

    bad = [
        ({"name": "x", "type": "slow", "cron": "61 * * * *"}, "cron"),
        ({"name": "x", "type": "slow", "cron": "0 2 * * *", "tz": "Mars/Base"}, "Mars/Base"),
        ({"name": "x", "type": "nope", "every": 5}, "nope"),
        ({"name": "x", "type": "slow", "every": 5, "payload": {"seconds": "x"}}, "seconds"),
        ({"name": "x", "type": "slow"}, "exactly one"),
    ]
    for body, word in bad:
        refused = http.post("/schedules", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert word in refused.json()["error"]["message"]
    assert http.get("/schedules/x").status_code == 404

    changed = http.patch("/schedules/nightly", json={"cron": "30 6 * * mon-fri"})
    assert changed.status_code == 200 and changed.json()["cron"] == "30 6 * * mon-fri"
    code_change = http.patch("/schedules/tick", json={"every": 5})
    assert code_change.status_code == 409 and "defined in code" in code_change.text

    assert http.post("/schedules/nightly/pause").json()["paused"] is True
    assert http.post("/schedules/nightly/resume").json()["paused"] is False
    triggered = http.post("/schedules/nightly/trigger")
    assert triggered.status_code == 202 and triggered.json()["outcome"] == "triggered"
    job_id = triggered.json()["job_id"]
    detail = http.get("/schedules/nightly").json()
    assert detail["fires"][0]["job_id"] == job_id
    assert detail["fires"][0]["job_state"] == "queued"
    wait_for(lambda: http.get(f"/jobs/{job_id}").status_code == 200, what="the job")

    assert http.delete("/schedules/tick").status_code == 409  # defined in code
    assert http.delete("/schedules/nightly").status_code == 204
    assert http.get("/schedules/nightly").status_code == 404
