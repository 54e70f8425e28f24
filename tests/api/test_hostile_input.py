"""Hostile input at the HTTP edge (issue 13): deep nesting, NaN, NUL, lone surrogates, odd id
spellings and timeouts. Each is a 4xx JSON error naming the field, never a 500, and nothing is
written; what is accepted just under a limit can be read back by every route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.app import JobFunction
from conveyor.cli.main import cli
from conveyor.core.durations import MAX_TIMEOUT_S
from conveyor.core.errors import InvalidDuration, JobNotFound
from conveyor.core.storable import MAX_DEPTH
from tests.api.conftest import api_for, error_of, job, listed_ids
from tests.apps import hostile
from tests.conftest import Backend

ROUTES = ["jobs", "keyed", "batch", "schedule", "schedule-update"]
# Values for the ``data`` field of a payload, as JSON text: Python's parser reads NaN and
# Infinity literals, and escapes give NUL and lone surrogates.
UNSTORABLE = {
    "nan": "NaN",
    "infinity": "[1, Infinity]",
    "minus-infinity": '{"x": -Infinity}',
    "huge-number": "1e999",
    "nul": '"a\\u0000b"',
    "nul-in-key": '{"k\\u0000": 1}',
    "surrogate": '"a\\ud800"',
    "surrogate-in-key": '{"\\udc00": 1}',
    "too-deep": "[" * MAX_DEPTH + "0" + "]" * MAX_DEPTH,  # the payload itself is level 1
    "at-the-serializer-limit": "[" * 254 + "0" + "]" * 254,  # was stored, then unreadable
    "far-too-deep": "[" * 299 + "0" + "]" * 299,
}


def app_for(backend: Backend) -> Conveyor:
    app = Conveyor(backend.settings())
    app.registry = hostile.app.registry
    backend.apps.append(app)
    return app


@pytest.fixture
def api(db_backend: Backend) -> Iterator[TestClient]:
    """The API over the hostile test app, on PostgreSQL and on SQLite."""
    with api_for(app_for(db_backend)) as client:
        yield client


def post_raw(api: TestClient, method: str, path: str, body: str) -> httpx.Response:
    return api.request(method, path, content=body, headers={"content-type": "application/json"})


def with_data(template: dict[str, Any], data: str) -> str:
    """``template`` as JSON text with the raw JSON ``data`` where it holds "@DATA@"."""
    return json.dumps(template).replace('"@DATA@"', data)


def send(api: TestClient, route: str, data: str) -> httpx.Response:
    """Send a payload ``{"data": <data>}`` the way ``route`` takes one."""
    payload = {"data": "@DATA@"}
    if route == "jobs":
        return post_raw(api, "POST", "/jobs", with_data({"type": "echo", "payload": payload}, data))
    if route == "keyed":
        body = {"type": "echo", "payload": payload, "idempotency_key": "k"}
        return post_raw(api, "POST", "/jobs", with_data(body, data))
    if route == "batch":
        jobs = [{"type": "echo", "payload": {"data": 1}}, {"type": "echo", "payload": payload}]
        return post_raw(api, "POST", "/jobs/batch", with_data({"jobs": jobs}, data))
    if route == "schedule":
        body = {"name": "s", "type": "echo", "every": 60, "payload": payload}
        return post_raw(api, "POST", "/schedules", with_data(body, data))
    assert route == "schedule-update"
    return post_raw(api, "PATCH", "/schedules/kept", with_data({"payload": payload}, data))


def prepare(api: TestClient, route: str) -> None:
    if route == "schedule-update":
        body = {"name": "kept", "type": "echo", "every": 60, "payload": {"data": 1}}
        assert api.post("/schedules", json=body).status_code == 201


def assert_nothing_written(api: TestClient, route: str) -> None:
    assert listed_ids(api) == []
    schedules = api.get("/schedules").json()
    if route == "schedule-update":
        assert [(s["name"], s["payload"]) for s in schedules] == [("kept", {"data": 1})]
    else:
        assert schedules == []


def refused_fields(response: httpx.Response, route: str) -> list[str]:
    """The field paths a 422 names (for a batch: those of its second job)."""
    if route == "batch":
        error = error_of(response, 422, "invalid_batch")
        (problem,) = error["details"]["errors"]
        assert problem["index"] == 1 and problem["code"] == "invalid_payload", problem
        return [e["field"] for e in problem["details"]["errors"]]
    error = error_of(response, 422, "invalid_payload")
    assert "data" in error["message"]
    return [e["field"] for e in error["details"]["errors"]]


# -- payloads -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
def test_unstorable_payloads_are_422_naming_the_field_and_write_nothing(
    api: TestClient, route: str
) -> None:
    prepare(api, route)
    answers = {name: send(api, route, data) for name, data in UNSTORABLE.items()}
    for name, response in answers.items():
        assert response.status_code == 422, (name, response.status_code, response.text)
        fields = refused_fields(response, route)
        assert fields and all(f.startswith("data") for f in fields), (name, fields)
    assert_nothing_written(api, route)


@pytest.mark.parametrize("route", ["jobs", "keyed", "batch", "schedule"])
def test_a_payload_nested_to_the_limit_is_accepted_and_readable_everywhere(
    api: TestClient, route: str
) -> None:
    levels = MAX_DEPTH - 1  # under the payload object itself
    data = "[" * levels + "0" + "]" * levels
    response = send(api, route, data)
    assert response.status_code in (201, 202), response.text
    expected = {"data": json.loads(data)}
    if route == "schedule":
        assert response.json()["payload"] == expected
        assert api.get("/schedules/s").json()["payload"] == expected
        assert api.get("/schedules").json()[0]["payload"] == expected
        triggered = api.post("/schedules/s/trigger")
        assert triggered.status_code == 202, triggered.text
        job_ids = [triggered.json()["job_id"]]
    else:
        job_ids = [i for i in listed_ids(api) if job(api, i)["payload"] != {"data": 1}]
    assert len(job_ids) == 1
    for job_id in job_ids:
        assert job(api, job_id)["payload"] == expected
        canceled = api.post(f"/jobs/{job_id}/cancel")
        assert canceled.status_code == 200 and canceled.json()["payload"] == expected
        events = api.get(f"/jobs/{job_id}/events")  # terminal now: the stream ends
        assert events.status_code == 200 and "canceled" in events.text
    page = api.get("/jobs", params={"limit": 1000})
    assert page.status_code == 200
    assert expected in [i["payload"] for i in page.json()["items"]]


def test_an_error_naming_a_surrogate_key_is_still_json(api: TestClient) -> None:
    response = send(api, "jobs", '{"ok": {"\\ud83d": 1}}')
    error = error_of(response, 422, "invalid_payload")
    assert error["details"]["errors"][0]["field"].startswith("data.ok.")


# -- schedule text fields -------------------------------------------------------------------


def test_schedule_names_and_queues_that_cannot_be_stored_are_422(api: TestClient) -> None:
    for body in (
        {"name": "a\u0000b", "type": "echo", "every": 60},
        {"name": "s", "type": "echo", "every": 60, "queue": "q\u0000"},
        {"name": "s", "type": "echo", "every": 60, "tz": "UTC\u0000"},
        {"name": "s", "type": "echo", "cron": "* * * * *\u0000"},
        {"name": "s", "type": "ec\u0000ho", "every": 60},
    ):
        error = error_of(api.post("/schedules", json=body), 422)
        assert "\\x00" in error["message"] or "NUL" in error["message"], error
    assert api.get("/schedules").json() == []
    created = api.post("/schedules", json={"name": "s", "type": "echo", "every": 60})
    assert created.status_code == 201
    error = error_of(api.patch("/schedules/s", json={"queue": "q\u0000"}), 422)
    assert "queue" in error["message"]
    assert api.get("/schedules/s").json()["queue"] is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/schedules/a%00b"),
        ("PATCH", "/schedules/a%00b"),
        ("DELETE", "/schedules/a%00b"),
        ("POST", "/schedules/a%00b/pause"),
        ("POST", "/schedules/a%00b/resume"),
        ("POST", "/schedules/a%00b/trigger"),
    ],
)
def test_a_nul_in_a_schedule_name_in_the_path_is_404(
    api: TestClient, method: str, path: str
) -> None:
    body = '{"paused": true}' if method == "PATCH" else ""
    error_of(post_raw(api, method, path, body), 404, "schedule_not_found")


# -- ids and cursors ------------------------------------------------------------------------

SPELLINGS = {
    "urn": lambda i: f"urn:uuid:{i}",
    "braces": lambda i: "{" + i + "}",
    "no-dashes": lambda i: i.replace("-", ""),
    "trailing-newline": lambda i: i + "\n",
    "padded": lambda i: f" {i} ",
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_only_canonical_job_ids_are_read(api: TestClient, spelling: str) -> None:
    job_id = api.post("/jobs", json={"type": "echo"}).json()["id"]
    other = SPELLINGS[spelling](job_id)
    path = quote(other, safe="")
    for method, url in (
        ("GET", f"/jobs/{path}"),
        ("POST", f"/jobs/{path}/cancel"),
        ("DELETE", f"/jobs/{path}"),
        ("POST", f"/jobs/{path}/retry"),
        ("GET", f"/jobs/{path}/events"),
    ):
        error_of(api.request(method, url), 404, "job_not_found")
    error = error_of(api.get("/jobs", params={"cursor": other}), 422, "invalid_cursor")
    assert "cursor" in error["message"]
    assert job(api, job_id)["state"] == "queued"


def test_an_upper_case_job_id_is_the_same_job_on_every_backend(api: TestClient) -> None:
    job_id = api.post("/jobs", json={"type": "echo"}).json()["id"]
    assert job(api, job_id.upper())["id"] == job_id
    newer = api.post("/jobs", json={"type": "echo"}).json()["id"]
    page = api.get("/jobs", params={"cursor": newer.upper()}).json()
    assert [i["id"] for i in page["items"]] == [job_id]


def test_the_command_line_refuses_a_non_canonical_cursor() -> None:
    cursor = "urn:uuid:0190a4c4-1234-7abc-8def-0123456789ab"
    result = CliRunner().invoke(cli, ["jobs", "--cursor", cursor])
    assert result.exit_code == 2 and "--cursor" in result.output, result.output


def test_unstorable_text_in_library_lookups_finds_nothing(db_backend: Backend) -> None:
    client = app_for(db_backend).client
    for text in ("a\u0000b", "a\ud800"):
        assert client.list(type=text).items == []
        assert client.list(queue=text).items == []
        with pytest.raises(JobNotFound):
            client.get(text)
    with pytest.raises(JobNotFound):
        client.get("urn:uuid:0190a4c4-1234-7abc-8def-0123456789ab")


# -- timeouts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timeout", [0, 0.0, "0s", -1, 1e308, "8d", MAX_TIMEOUT_S + 1, "NaN", "inf"]
)
def test_a_timeout_override_must_be_positive_and_at_most_the_maximum(
    api: TestClient, timeout: object
) -> None:
    response = api.post("/jobs", json={"type": "echo", "timeout": timeout})
    error = error_of(response, 422, "invalid_duration")
    assert error["message"].startswith("timeout")
    assert listed_ids(api) == []


def test_timeout_overrides_within_range_and_the_default(api: TestClient) -> None:
    expected = {None: 30.0, "1h": 3600.0, MAX_TIMEOUT_S: MAX_TIMEOUT_S, "7d": MAX_TIMEOUT_S}
    for timeout, seconds in expected.items():
        job_id = api.post("/jobs", json={"type": "echo", "timeout": timeout}).json()["id"]
        assert job(api, job_id)["timeout_s"] == seconds


def test_a_timeout_override_from_code_must_be_positive_and_bounded(db_backend: Backend) -> None:
    app = app_for(db_backend)
    echo = JobFunction(app, hostile.echo.job_type)
    for timeout in (0, "0s", 1e308, "8d"):
        with pytest.raises(InvalidDuration, match="^timeout"):
            app.enqueue("echo", {}, timeout=timeout)
        with pytest.raises(InvalidDuration, match="^timeout"):
            echo.options(timeout=timeout).enqueue()
    assert app.list().items == []
    assert app.get(echo.options(timeout=None).enqueue().id).timeout_s == 30.0
