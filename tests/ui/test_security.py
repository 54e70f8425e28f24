"""The dashboard's security rules over HTTP (in process, on SQLite): sessions, CSRF, the
read-only modes, escaping, headers, and what a session cookie may do on the API."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import make_api
from tests.conftest import Backend

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"


@pytest.fixture
def locked(sqlite_backend: Backend) -> Iterator[TestClient]:
    with make_api(sqlite_backend, api_tokens=ADMIN, readonly_tokens=READER) as client:
        yield client


@pytest.fixture
def open_ui(sqlite_backend: Backend) -> Iterator[TestClient]:
    with make_api(sqlite_backend) as client:
        yield client


def csrf_of(client: TestClient, path: str = "/ui/login") -> str:
    """The CSRF token a page gives the browser: in its forms and in a cookie."""
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    token = client.cookies["conveyor_csrf"]
    assert found is None or found.group(1) == token
    return token


def log_in(client: TestClient, token: str) -> None:
    csrf = csrf_of(client)
    response = client.post(
        "/ui/login", data={"csrf": csrf, "token": token, "next": "/ui"}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui"


def enqueue(client: TestClient, token: str = ADMIN, **payload: object) -> str:
    response = client.post(
        "/jobs",
        json={"type": "add", "payload": {"a": 1, **payload}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_every_page_needs_a_session_and_a_wrong_token_opens_none(locked: TestClient) -> None:
    for path in ("/ui", "/ui/jobs", "/ui/workers", "/ui/schedules", "/ui/jobs/x"):
        response = locked.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=")
    csrf = csrf_of(locked)
    response = locked.post(
        "/ui/login", data={"csrf": csrf, "token": "wrong", "next": "/ui"}, follow_redirects=False
    )
    assert response.status_code == 303 and "failed=1" in response.headers["location"]
    assert "conveyor_session" not in response.cookies
    assert locked.get("/ui", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_strict_and_tamper_proof(locked: TestClient) -> None:
    csrf = csrf_of(locked)
    response = locked.post(
        "/ui/login", data={"csrf": csrf, "token": ADMIN, "next": "/ui"}, follow_redirects=False
    )
    header = response.headers["set-cookie"]
    assert "conveyor_session=" in header and "HttpOnly" in header and "SameSite=strict" in header
    assert locked.get("/ui", follow_redirects=False).status_code == 200
    value = locked.cookies["conveyor_session"]
    expires, role, fingerprint, signature = value.split(".")
    for forged in (
        f"{int(expires) + 10**6}.{role}.{fingerprint}.{signature}",  # longer life
        f"{expires}.admin.{fingerprint}.{signature[:-1]}0",  # another signature
        f"{expires}.{role}.{'0' * 32}.{signature}",  # another token
        "garbage",
    ):
        locked.cookies.set("conveyor_session", forged)
        assert locked.get("/ui", follow_redirects=False).status_code == 303, forged


def test_a_form_without_its_csrf_token_or_from_elsewhere_changes_nothing(
    locked: TestClient,
) -> None:
    log_in(locked, ADMIN)
    job_id = enqueue(locked)
    for data, headers in (
        ({}, {}),
        ({"csrf": "x" * 43}, {}),
        ({"csrf": locked.cookies["conveyor_csrf"]}, {"Origin": "https://evil.example"}),
    ):
        response = locked.post(f"/ui/jobs/{job_id}/cancel", data=data, headers=headers)
        assert response.status_code == 403, response.text
    state = locked.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert state.json()["state"] == "queued"
    ok = locked.post(
        f"/ui/jobs/{job_id}/cancel",
        data={"csrf": locked.cookies["conveyor_csrf"]},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == f"/ui/jobs/{job_id}?notice=canceled"


def test_a_session_cookie_reads_the_api_but_never_changes_it(locked: TestClient) -> None:
    job_id = enqueue(locked)
    log_in(locked, ADMIN)  # the browser's EventSource sends the cookie, not a header
    assert locked.get(f"/jobs/{job_id}").status_code == 200
    assert locked.post(f"/jobs/{job_id}/cancel").status_code == 401
    assert locked.post("/jobs", json={"type": "add", "payload": {"a": 1}}).status_code == 401


def test_read_only_tokens_and_read_only_mode_refuse_every_action(
    locked: TestClient, sqlite_backend: Backend
) -> None:
    job_id = enqueue(locked)
    log_in(locked, READER)
    page = locked.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200 and "Cancel job" not in page.text and "read-only" in page.text
    refused = locked.post(
        f"/ui/jobs/{job_id}/cancel", data={"csrf": locked.cookies["conveyor_csrf"]}
    )
    assert refused.status_code == 403
    reader = {"Authorization": f"Bearer {READER}"}
    assert (
        locked.post(f"/jobs/{job_id}/cancel", headers=reader).json()["error"]["code"] == "forbidden"
    )
    with make_api(sqlite_backend, ui_readonly=True) as client:
        assert "Cancel job" not in client.get(f"/ui/jobs/{job_id}").text
        csrf = csrf_of(client, "/ui/jobs")
        assert client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf}).status_code == 403
        assert client.post(f"/jobs/{job_id}/cancel").status_code == 200  # the API is not the UI


def test_login_goes_only_to_pages_of_this_dashboard(locked: TestClient) -> None:
    for target in ("https://evil.example/ui", "//evil.example/ui", "/ui//evil.example", "/jobs"):
        csrf = csrf_of(locked)
        response = locked.post(
            "/ui/login", data={"csrf": csrf, "token": ADMIN, "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/ui", target


def test_pages_carry_security_headers_and_escape_what_they_show(open_ui: TestClient) -> None:
    job_id = enqueue(open_ui)
    for path in ("/ui", "/ui/jobs", f"/ui/jobs/{job_id}", "/ui/workers", "/ui/schedules"):
        response = open_ui.get(path)
        assert response.status_code == 200, (path, response.text)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in response.text.replace(
            '<script type="module" src="/ui/static/ui.js"></script>', ""
        )
    assert open_ui.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")


def test_bad_input_gets_a_page_that_names_the_problem(open_ui: TestClient) -> None:
    cases = {
        "/ui/jobs/not-an-id": (404, "not-an-id"),
        "/ui/jobs/01a23c78-1248-7381-a3c2-e53f2e487b0c": (404, "No such job"),
        "/ui/jobs?id=nonsense": (404, "nonsense"),
        "/ui/jobs?state=exploded": (422, "is not a job state"),
        "/ui/jobs?since=3weeks": (422, "since: choose one of"),
        "/ui/jobs?created_after=yesterday": (422, "is not an RFC 3339 time"),
        "/ui/jobs?created_after=2026-12-01T00:00:00": (422, "time zone"),
        "/ui/jobs?cursor=zzz": (422, "cursor"),
        "/ui/jobs?type=" + "x" * 300: (422, "at most 200"),
    }
    for path, (status, text) in cases.items():
        response = open_ui.get(path)
        assert response.status_code == status, (path, response.status_code)
        assert text in response.text, (path, response.text[-500:])
        assert "content-security-policy" in response.headers


def test_a_pasted_id_lands_on_its_job(open_ui: TestClient) -> None:
    job_id = enqueue(open_ui)
    response = open_ui.get(f"/ui/jobs?id=%20{job_id.upper()}%20", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/ui/jobs/{job_id}"
