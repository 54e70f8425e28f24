"""Every refusal is one JSON shape with a stable code; odd strings survive a round trip."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ApiFactory, enqueue, error_of, job, listed_ids
from tests.apps.jobs import app as jobs_app

JSON = {"content-type": "application/json"}


def test_malformed_json_is_400(sqlite_api: TestClient) -> None:
    for body in (b"{", b'{"type": "add",}', b"not json", b'{"type": "add"} trailing'):
        error_of(sqlite_api.post("/jobs", content=body, headers=JSON), 400, "malformed_json")
    error_of(sqlite_api.post("/jobs/batch", content=b"[", headers=JSON), 400, "malformed_json")


def test_a_body_that_is_not_json_is_415(sqlite_api: TestClient) -> None:
    body = json.dumps({"type": "add", "payload": {"a": 1}}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = sqlite_api.post("/jobs", content=body, headers={"content-type": content_type})
        error = error_of(response, 415, "unsupported_media_type")
        assert content_type.split("/")[0] in error["message"]
    error_of(sqlite_api.post("/jobs", content=body), 415, "unsupported_media_type")
    batch = json.dumps({"jobs": [{"type": "add", "payload": {"a": 1}}]}).encode()
    plain = {"content-type": "text/plain"}
    error_of(sqlite_api.post("/jobs/batch", content=batch, headers=plain), 415)
    # a JSON media type with parameters or a +json suffix is JSON
    for content_type in ("application/json; charset=utf-8", "application/vnd.conveyor+json"):
        response = sqlite_api.post("/jobs", content=body, headers={"content-type": content_type})
        assert response.status_code == 202, (content_type, response.text)


def test_unknown_routes_are_404_and_wrong_methods_405(sqlite_api: TestClient) -> None:
    for path in ("/nope", "/jobs/a/b/c", "/api/jobs", "/"):
        error_of(sqlite_api.get(path), 404, "not_found")
    error_of(sqlite_api.put("/jobs"), 405, "method_not_allowed")
    error_of(sqlite_api.patch("/jobs/batch"), 405, "method_not_allowed")
    error_of(sqlite_api.post("/healthz"), 405, "method_not_allowed")
    error_of(sqlite_api.put(f"/jobs/{uuid.uuid4()}"), 405, "method_not_allowed")
    error_of(sqlite_api.delete("/job-types"), 405, "method_not_allowed")
    error_of(sqlite_api.get("/jobs/batch/x"), 404)


def test_an_unknown_job_type_names_the_known_ones(sqlite_api: TestClient) -> None:
    error = error_of(sqlite_api.post("/jobs", json={"type": "ad"}), 422, "unknown_job_type")
    for name in jobs_app.registry.names():
        assert name in error["message"]
    assert error["details"]["known"] == jobs_app.registry.names()
    assert error["details"]["type"] == "ad"


def test_an_invalid_payload_names_every_bad_field(sqlite_api: TestClient) -> None:
    response = sqlite_api.post(
        "/jobs", json={"type": "add", "payload": {"a": "one", "b": [2], "c": 3}}
    )
    error = error_of(response, 422, "invalid_payload")
    fields = {e["field"]: e["type"] for e in error["details"]["errors"]}
    assert fields == {"a": "int_parsing", "b": "int_type", "c": "extra_forbidden"}
    for name in ("a:", "b:", "c:"):
        assert name in error["message"]

    missing = error_of(sqlite_api.post("/jobs", json={"type": "truncate_table"}), 422)
    assert sorted(e["field"] for e in missing["details"]["errors"]) == ["schema", "table"]
    assert all(e["type"] == "missing" for e in missing["details"]["errors"])

    # the request's own fields are named as well
    shape = error_of(sqlite_api.post("/jobs", json={"payload": {}, "delay": []}), 422)
    named = {e["field"] for e in shape["details"]["errors"]}
    assert {"type", "delay"} <= {f.split(".")[0] for f in named}, named
    assert listed_ids(sqlite_api) == []


def test_a_nul_character_in_a_payload_string_is_refused_naming_the_field(
    sqlite_api: TestClient,
) -> None:
    response = sqlite_api.post(
        "/jobs", json={"type": "truncate_table", "payload": {"schema": "public", "table": "a\0b"}}
    )
    error = error_of(response, 422, "invalid_payload")
    (problem,) = error["details"]["errors"]
    assert problem["field"] == "table" and "NUL" in problem["message"]
    assert "table" in error["message"]
    assert listed_ids(sqlite_api) == []


def test_a_lone_surrogate_is_refused_and_an_escaped_nul_typed_as_text_is_not(
    sqlite_api: TestClient,
) -> None:
    body = '{"type": "truncate_table", "payload": {"schema": "public", "table": "a\\ud800"}}'
    response = sqlite_api.post("/jobs", content=body, headers={"content-type": "application/json"})
    (problem,) = error_of(response, 422, "invalid_payload")["details"]["errors"]
    assert problem["field"] == "table" and "surrogate" in problem["message"]
    assert listed_ids(sqlite_api) == []
    # A backslash followed by "u0000" is ordinary text: stored as given.
    typed = {"type": "truncate_table", "payload": {"schema": "public", "table": "a\\u0000"}}
    accepted = sqlite_api.post("/jobs", json=typed)
    assert accepted.status_code == 202, accepted.text
    stored = sqlite_api.get(f"/jobs/{accepted.json()['id']}").json()
    assert stored["payload"]["table"] == "a\\u0000"


def test_a_body_over_the_limit_is_413_and_nothing_is_written(
    sqlite_api_factory: ApiFactory,
) -> None:
    api = sqlite_api_factory(max_body_bytes=2000)
    big = {"type": "truncate_table", "payload": {"schema": "s" * 2500, "table": "t"}}
    response = api.post("/jobs", json=big)
    error = error_of(response, 413, "body_too_large")
    assert "2000" in error["message"]
    batch = {"jobs": [{"type": "add", "payload": {"a": i}} for i in range(100)]}
    error_of(api.post("/jobs/batch", json=batch), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"type": "truncate_table", "payload": {"schema": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'", "table": "t"}}'

    chunked = api.post("/jobs", content=chunks(), headers=JSON)
    assert "content-length" not in chunked.request.headers
    error_of(chunked, 413, "body_too_large")
    assert listed_ids(api) == []

    small = {"type": "truncate_table", "payload": {"schema": "s" * 1500, "table": "t"}}
    assert api.post("/jobs", json=small).status_code == 202  # under the limit: fine


@pytest.mark.parametrize(
    "route",
    [
        "/jobs",
        "/jobs/00000000-0000-7000-8000-000000000000",
        "/nope",
        "/jobs?limit=x",
        "/jobs/batch",
    ],
)
def test_errors_never_show_a_traceback(sqlite_api: TestClient, route: str) -> None:
    for method in ("GET", "POST", "PUT", "DELETE"):
        response = sqlite_api.request(method, route, content=b"{", headers=JSON)
        if response.status_code < 400:
            continue
        error_of(response, response.status_code)


def test_a_405_names_the_allowed_methods(sqlite_api: TestClient) -> None:
    def allowed(method: str, path: str) -> set[str]:
        response = sqlite_api.request(method, path)
        assert response.status_code == 405
        return {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}

    assert allowed("PUT", "/jobs") == {"GET", "POST"}
    assert allowed("POST", "/healthz") == {"GET"}
    assert allowed("PUT", f"/jobs/{uuid.uuid4()}") == {"GET", "DELETE"}
    assert allowed("GET", f"/jobs/{uuid.uuid4()}/retry") == {"POST"}


# -- round trips ------------------------------------------------------------------------------

AWKWARD = {
    "sql": "'; DROP TABLE conveyor_jobs; --",
    "sql_quote": "Robert'); DELETE FROM conveyor_attempts WHERE ('1'='1",
    "format": "{0} %s %(x)s {x!r} %d {{}}",
    "html": "<script>alert(1)</script>&amp;\"'",
    "traversal": "../../etc/passwd",
    "backslashes": "C:\\Windows\\System32\\ \\u0041 \\n",
    "json_like": '{"a": [1, 2], "b": null}',
    "whitespace": " \t\r\n leading and trailing \n",
    "emoji": "😀🎉👍🏽 👨‍👩‍👧‍👦 🇫🇷",
    "rtl": "\u202eשלום عليكم\u202c \u200f",
    "combining": "e\u0301 a\u0308 Z\u0351\u0348\u0324 (not NFC-normalised)",
    "cjk": "漢字かなカナ한국어",
    "noncharacter": "\uffff\ufffe end",
    "astral": "𝄞 \U0001f600 \U0010ffff \U00020000",
    "separators": "line\u2028para\u2029end",
    "controls": "\x01\x07\x1b[31m\x7f",
    "bom": "\ufeffstart",
    "empty": "",
}


def test_awkward_strings_come_back_byte_for_byte(api: TestClient) -> None:
    ids = {
        name: enqueue(api, "truncate_table", {"schema": text, "table": text[::-1]})
        for name, text in AWKWARD.items()
    }
    wrong = {}
    for name, job_id in ids.items():
        payload = job(api, job_id)["payload"]
        expected = {"schema": AWKWARD[name], "table": AWKWARD[name][::-1]}
        if payload != expected:
            wrong[name] = payload
    assert wrong == {}
    listed = {
        j["id"]: j["payload"]
        for j in api.get("/jobs", params={"type": "truncate_table", "limit": 100}).json()["items"]
    }
    assert {name: listed[i]["schema"] for name, i in ids.items()} == AWKWARD

    raw = api.get(f"/jobs/{ids['astral']}").content
    assert AWKWARD["astral"].encode() in raw or json.dumps(AWKWARD["astral"]).encode() in raw


def test_awkward_strings_are_harmless_in_filters_and_keys(api: TestClient) -> None:
    job_id = enqueue(api, "add", {"a": 1})
    for text in [*AWKWARD.values(), "a\0b"]:
        if not text:
            continue
        for name in ("type", "queue"):
            response = api.get("/jobs", params={name: text})
            assert response.status_code == 200, (name, text, response.text)
            assert response.json()["items"] == []
    keyed = api.post(
        "/jobs",
        json={"type": "add", "payload": {"a": 2}, "idempotency_key": AWKWARD["sql"]},
    )
    assert keyed.status_code == 202
    assert job(api, keyed.json()["id"])["idempotency_key"] == AWKWARD["sql"]
    emoji_queue = {"type": "add", "payload": {"a": 3}, "queue": AWKWARD["emoji"]}
    error_of(api.post("/jobs", json=emoji_queue), 422, "invalid_queue_name")  # ASCII names only
    assert sorted(listed_ids(api)) == sorted([job_id, keyed.json()["id"]])


# -- known bugs -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["queue", "idempotency_key"])
def test_a_nul_in_queue_or_idempotency_key_is_422(api: TestClient, field: str) -> None:
    response = api.post("/jobs", json={"type": "add", "payload": {"a": 1}, field: "a\0b"})
    error_of(response, 422)
    assert listed_ids(api) == []


@pytest.mark.parametrize(
    "option",
    [{"delay": 1e300}, {"delay": "99999999999999d"}, {"run_at": "0001-01-01T00:00:00+01:00"}],
    ids=["huge-delay-number", "huge-delay-text", "run_at-before-year-1-utc"],
)
def test_an_out_of_range_schedule_is_422(sqlite_api: TestClient, option: dict[str, object]) -> None:
    response = sqlite_api.post("/jobs", json={"type": "add", "payload": {"a": 1}, **option})
    error_of(response, 422)
    assert listed_ids(sqlite_api) == []


@pytest.mark.parametrize(
    "params",
    [
        {"created_after": "0001-01-01T00:00:00+01:00"},
        {"created_before": "9999-12-31T23:59:59-01:00"},
    ],
    ids=["after-year-1", "before-year-10000"],
)
def test_an_out_of_range_time_filter_is_422(sqlite_api: TestClient, params: dict[str, str]) -> None:
    error_of(sqlite_api.get("/jobs", params=params), 422)
