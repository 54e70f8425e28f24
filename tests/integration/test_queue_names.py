"""Queue names follow one rule wherever they come in: refused with a 4xx naming the queue,
nothing written; names within the rule are stored as given."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.client import EnqueueOptions, EnqueueRequest
from conveyor.core.names import InvalidQueueName
from conveyor.scheduler import scheduler_for
from tests.api.conftest import error_of, listed_ids
from tests.conftest import Backend
from tests.integration.test_scheduler import periodic_app

BAD = ["", "two words", "x" * 101, "tab\t", "emoji😀", "a/b", "(other)", "é"]


def test_the_client_refuses_invalid_queue_names_and_writes_nothing(db_backend: Backend) -> None:
    app = db_backend.app()
    for name in BAD:
        with pytest.raises(InvalidQueueName) as info:
            app.enqueue("add", {"a": 1}, queue=name)
        assert info.value.details["queue"] in (name, name[:120] + "…")
    good = EnqueueRequest("add", {"a": 1}, EnqueueOptions(queue="ok"))
    bad = EnqueueRequest("add", {"a": 1}, EnqueueOptions(queue="not ok"))
    with pytest.raises(InvalidQueueName):
        app.enqueue_many([good, bad])  # all or nothing
    assert app.list().items == []
    odd = app.enqueue("add", {"a": 1}, queue="billing.eu-1:high_2")
    assert odd.get().queue == "billing.eu-1:high_2"


def test_the_api_answers_422_naming_the_queue(db_backend: Backend) -> None:
    with TestClient(create_app(db_backend.app())) as api:
        for name in BAD:
            body = {"type": "add", "payload": {"a": 1}, "queue": name}
            response = api.post("/jobs", json=body)
            if len(name) <= 100 and name:  # the schema's own length check answers first
                error = error_of(response, 422, "invalid_queue_name")
                assert error["details"]["queue"] == name
                assert repr(name) in error["message"]
            else:
                error_of(response, 422)
        batch = {"jobs": [{"type": "add", "payload": {"a": 1}, "queue": "ok"},
                          {"type": "add", "payload": {"a": 2}, "queue": "no good"}]}  # fmt: skip
        refused = error_of(api.post("/jobs/batch", json=batch), 422, "invalid_batch")
        assert refused["details"]["errors"][0]["code"] == "invalid_queue_name"
        assert refused["details"]["errors"][0]["index"] == 1
        assert listed_ids(api) == []


def test_schedules_refuse_invalid_queue_names(db_backend: Backend) -> None:
    app = periodic_app(db_backend)
    scheduler_for(app).sync()
    with pytest.raises(InvalidQueueName):
        app.schedule("bad", "slow", every=5, queue="no good")
    with TestClient(create_app(app)) as http:
        body = {"name": "n", "type": "slow", "every": 5, "queue": "no good"}
        error = error_of(http.post("/schedules", json=body), 422, "invalid_queue_name")
        assert "'no good'" in error["message"]
        created = http.post("/schedules", json={**body, "queue": "nightly.eu-1"})
        assert created.status_code == 201, created.text
        changed = http.patch("/schedules/n", json={"queue": "still bad"})
        error_of(changed, 422, "invalid_queue_name")
        assert http.get("/schedules/n").json()["queue"] == "nightly.eu-1"
