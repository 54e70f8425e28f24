"""HTTP API fixtures: an in-process TestClient per backend, and a few response helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.api import create_app
from tests.conftest import Backend

ApiFactory = Callable[..., TestClient]


def make_api(backend: Backend, **overrides: Any) -> TestClient:
    """A TestClient over ``create_app`` for a Conveyor bound to ``backend``.

    ``overrides`` are Settings fields (``api_tokens="t1,t2"``, ``max_body_bytes=2000``).
    Server errors come back as responses, so that a 500 fails an assertion, not the client.
    """
    return api_for(backend.app(**overrides))


def api_for(conveyor: Conveyor) -> TestClient:
    return TestClient(create_app(conveyor), raise_server_exceptions=False)


@pytest.fixture
def api_factory(backend: Backend) -> Iterator[ApiFactory]:
    """Build more clients on the same backend, with settings overrides."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = make_api(backend, **overrides)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def api(backend: Backend) -> Iterator[TestClient]:
    """The API on every backend in turn (PostgreSQL + Redis, PostgreSQL, SQLite)."""
    with make_api(backend) as client:
        yield client


@pytest.fixture
def sqlite_api(sqlite_backend: Backend) -> Iterator[TestClient]:
    """The API on SQLite only: for checks where the backend makes no difference."""
    with make_api(sqlite_backend) as client:
        yield client


@pytest.fixture
def sqlite_api_factory(sqlite_backend: Backend) -> Iterator[ApiFactory]:
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = make_api(sqlite_backend, **overrides)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


# -- helpers --------------------------------------------------------------------------------


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is our JSON error with ``status`` (and ``code``); return it."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    assert error["message"], error
    assert isinstance(error["details"], dict), error
    assert "Traceback" not in response.text and 'File "' not in response.text
    if code is not None:
        assert error["code"] == code, error
    return error


def enqueue(api: TestClient, job_type: str, payload: dict[str, Any] | None = None,
            **fields: Any) -> str:  # fmt: skip
    """POST /jobs and return the new job's id (asserting 202)."""
    body: dict[str, Any] = {"type": job_type, **fields}
    if payload is not None:
        body["payload"] = payload
    response = api.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def job(api: TestClient, job_id: str) -> dict[str, Any]:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def listed_ids(api: TestClient, **params: Any) -> list[str]:
    """Every job id GET /jobs lists for ``params``, walking all pages."""
    ids: list[str] = []
    cursor = None
    while True:
        query = dict(params)
        if cursor:
            query["cursor"] = cursor
        response = api.get("/jobs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids
