"""The API when PostgreSQL stops: 503 with Retry-After, fast; and back when it returns."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.apps.jobs import app as jobs_app
from tests.servers import PrivatePostgres


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE outage")
    yield pg
    pg.cleanup()


def test_enqueue_answers_503_quickly_while_the_database_is_down(
    private_pg: PrivatePostgres,
) -> None:
    url = private_pg.url.rsplit("/", 1)[0] + "/outage"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    conveyor = Conveyor(Settings(database_url=url))
    conveyor.registry = jobs_app.registry
    client = TestClient(create_app(conveyor))
    assert client.post("/jobs", json={"type": "add", "payload": {"a": 1}}).status_code == 202

    private_pg.stop("immediate")
    try:
        started = time.monotonic()
        down = client.post("/jobs", json={"type": "add", "payload": {"a": 2}})
        assert time.monotonic() - started < 5
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "5"
        assert down.json()["error"]["code"] == "database_unavailable"
        assert "Traceback" not in down.text
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"]["ok"] is False
        assert client.get("/healthz").status_code == 200
        assert client.get("/queues").status_code == 503
        listing = client.get("/jobs")
        assert listing.status_code == 503
    finally:
        private_pg.start()
    back = client.post("/jobs", json={"type": "add", "payload": {"a": 3}})
    assert back.status_code == 202
    assert client.get("/readyz").status_code == 200
    conveyor.close()
