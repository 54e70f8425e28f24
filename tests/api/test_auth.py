"""Bearer tokens guard every route but /healthz; secrets in payloads are never shown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conveyor import Context, Conveyor
from conveyor.api import create_app
from conveyor.core.errors import ConfigurationError
from tests.api.conftest import ApiFactory, api_for, error_of
from tests.conftest import Backend

GUARDED = [
    ("GET", "/jobs"),
    ("GET", "/jobs/00000000-0000-7000-8000-000000000000"),
    ("GET", "/jobs/00000000-0000-7000-8000-000000000000/events"),
    ("POST", "/jobs/00000000-0000-7000-8000-000000000000/cancel"),
    ("POST", "/jobs/00000000-0000-7000-8000-000000000000/retry"),
    ("DELETE", "/jobs/00000000-0000-7000-8000-000000000000"),
    ("GET", "/job-types"),
    ("GET", "/queues"),
    ("GET", "/workers"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def guarded(sqlite_api_factory: ApiFactory) -> TestClient:
    return sqlite_api_factory(api_tokens="alpha, beta")


def unauthorized(response: httpx.Response) -> None:
    error_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_requests_without_a_valid_token_are_401(guarded: TestClient) -> None:
    for method, path in GUARDED:
        unauthorized(guarded.request(method, path))
    unauthorized(guarded.post("/jobs", json={"type": "add", "payload": {"a": 1}}))
    unauthorized(guarded.post("/jobs/batch", json={"jobs": [{"type": "add"}]}))
    for header in (
        "Bearer gamma",
        "Bearer alph",
        "Bearer alphabeta",
        "Bearer alpha,beta",
        "Bearer ",
        "Bearer",
        "alpha",
        "Basic alpha",
        "Token beta",
    ):
        unauthorized(guarded.get("/jobs", headers={"Authorization": header}))
    # nothing was enqueued by the refused requests
    assert guarded.get("/jobs", headers=bearer("alpha")).json()["items"] == []


def test_a_refused_request_learns_nothing_about_its_body(guarded: TestClient) -> None:
    unauthorized(guarded.post("/jobs", json={"type": "no-such-type"}))
    unauthorized(guarded.post("/jobs", json={"payload": "not an object"}))
    unauthorized(guarded.get("/jobs", params={"limit": 5000, "state": "nonsense"}))


def test_a_refused_request_with_malformed_json_is_401(guarded: TestClient) -> None:
    response = guarded.post("/jobs", content=b"{", headers={"content-type": "application/json"})
    unauthorized(response)


def test_every_configured_token_is_accepted(guarded: TestClient) -> None:
    for token in ("alpha", "beta"):
        response = guarded.post(
            "/jobs", json={"type": "add", "payload": {"a": 1}}, headers=bearer(token)
        )
        assert response.status_code == 202, response.text
    lower = guarded.get("/jobs", headers={"Authorization": "bearer beta"})
    assert lower.status_code == 200 and len(lower.json()["items"]) == 2
    for method, path in GUARDED:
        response = guarded.request(method, path, headers=bearer("beta"))
        assert response.status_code != 401, (method, path, response.text)


def test_health_is_public_but_the_docs_are_not(guarded: TestClient) -> None:
    health = guarded.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    unauthorized(guarded.get("/openapi.json"))
    unauthorized(guarded.get("/docs"))
    spec = guarded.get("/openapi.json", headers=bearer("alpha"))
    assert spec.status_code == 200
    assert "/jobs" in spec.json()["paths"] and "/openapi.json" not in spec.json()["paths"]
    docs = guarded.get("/docs", headers=bearer("alpha"))
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "openapi.json" in docs.text


def test_without_tokens_nothing_is_guarded(sqlite_api: TestClient) -> None:
    for method, path in GUARDED:
        response = sqlite_api.request(method, path)
        assert response.status_code != 401, (method, path)
    assert sqlite_api.get("/jobs", headers=bearer("anything")).status_code == 200


def test_tokens_can_come_from_a_file(sqlite_api_factory: ApiFactory, tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# rotated 2026-11-01\n  gamma  \n\ndelta\n")
    api = sqlite_api_factory(api_tokens=f"@{path}")
    assert api.get("/jobs", headers=bearer("gamma")).status_code == 200
    assert api.get("/jobs", headers=bearer("delta")).status_code == 200
    for wrong in ("alpha", "# rotated 2026-11-01", "gam"):
        unauthorized(api.get("/jobs", headers=bearer(wrong)))
    unauthorized(api.get("/jobs"))


def test_unusable_token_settings_fail_at_start(sqlite_backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        create_app(sqlite_backend.app(api_tokens=f"@{tmp_path / 'missing'}"))
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigurationError, match="no token"):
        create_app(sqlite_backend.app(api_tokens=f"@{empty}"))
    with pytest.raises(ConfigurationError, match="no token"):
        create_app(sqlite_backend.app(api_tokens=" , ,"))


# -- secrets ----------------------------------------------------------------------------------

secret_app = Conveyor()


@secret_app.job
def login(
    ctx: Context,
    user: str,
    password: str,
    api_key: str = "",
    token: str | None = None,
    options: dict[str, str] | None = None,
) -> str:
    return user


@secret_app.job(secret_fields=["pin"])
def unlock(ctx: Context, door: str, pin: str) -> str:
    return door


@pytest.fixture
def secret_conveyor(sqlite_backend: Backend) -> Conveyor:
    conveyor = Conveyor(sqlite_backend.settings())
    conveyor.registry = secret_app.registry
    sqlite_backend.apps.append(conveyor)
    return conveyor


@pytest.fixture
def secret_api(secret_conveyor: Conveyor) -> Iterator[TestClient]:
    with api_for(secret_conveyor) as client:
        yield client


SECRETS = ("hunter2", "k-123-secret", "tok-xyz", "sess-42", "4711")


def test_secret_fields_are_masked_in_every_response(
    secret_api: TestClient, secret_conveyor: Conveyor
) -> None:
    payload = {
        "user": "ann",
        "password": "hunter2",
        "api_key": "k-123-secret",
        "token": "tok-xyz",
        "options": {"session_id": "sess-42", "colour": "red"},
    }
    created = secret_api.post("/jobs", json={"type": "login", "payload": payload})
    assert created.status_code == 202
    login_id = created.json()["id"]
    unlock_id = secret_api.post(
        "/jobs", json={"type": "unlock", "payload": {"door": "front", "pin": "4711"}}
    ).json()["id"]

    masked_login = {
        "user": "ann",
        "password": "***",
        "api_key": "***",
        "token": "***",
        "options": {"session_id": "***", "colour": "red"},
    }
    one = secret_api.get(f"/jobs/{login_id}")
    assert one.json()["payload"] == masked_login
    assert secret_api.get(f"/jobs/{unlock_id}").json()["payload"] == {"door": "front", "pin": "***"}
    listing = secret_api.get("/jobs")
    by_id = {j["id"]: j["payload"] for j in listing.json()["items"]}
    assert by_id == {login_id: masked_login, unlock_id: {"door": "front", "pin": "***"}}
    canceled = secret_api.post(f"/jobs/{login_id}/cancel")
    assert canceled.json()["payload"] == masked_login
    for response in (created, one, listing, canceled):
        assert not any(s in response.text for s in SECRETS), response.text

    # masked on the way out only: the stored payload keeps the real values
    assert secret_conveyor.get(login_id).payload == {**payload}
    assert secret_conveyor.get(unlock_id).payload == {"door": "front", "pin": "4711"}


def test_refusals_do_not_echo_secret_values(secret_api: TestClient) -> None:
    bad = {"user": "ann", "password": ["hunter2"], "api_key": 4711, "pin": "tok-xyz"}
    response = secret_api.post("/jobs", json={"type": "login", "payload": bad})
    error = error_of(response, 422, "invalid_payload")
    assert {e["field"] for e in error["details"]["errors"]} == {"password", "api_key", "pin"}
    assert not any(s in response.text for s in SECRETS), response.text

    key = {"Idempotency-Key": "login-1"}
    first = {"user": "ann", "password": "hunter2"}
    assert secret_api.post(
        "/jobs", json={"type": "login", "payload": first}, headers=key
    ).is_success
    clash = {"user": "ann", "password": "sess-42"}
    conflict = secret_api.post("/jobs", json={"type": "login", "payload": clash}, headers=key)
    error_of(conflict, 422, "idempotency_conflict")
    assert not any(s in conflict.text for s in SECRETS), conflict.text
