"""Schemathesis against /openapi.json: every route but the event stream, on SQLite, PostgreSQL
(where NUL characters and non-canonical ids once answered 500) and PostgreSQL + Redis; no 5xx,
and every response fits the schema.

Random names and ids only ever find nothing, so Hypothesis aims part of the schema-valid
requests at what exists: the seeded jobs (their ids also spelt in forms Python reads as UUIDs
and the databases do not), a seeded schedule, and the job type whose payload takes any value,
so that generated payloads, queue names and schedule names reach the database.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case as AnyCase
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.core.errors import ConveyorError
from conveyor.core.settings import Settings
from conveyor.core.storable import text_problem
from conveyor.scheduler import scheduler_for
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.apps.jobs import app as jobs_app
from tests.conftest import _drop_prefix
from tests.servers import ensure_postgres, ensure_redis

Case = AnyCase[Any]
#: A stream that lasts until its job ends: tested with uvicorn, not fuzzed.
STREAM = r".*/events$"
SCHEDULE_OPERATIONS = {
    "GET /schedules", "POST /schedules", "GET /schedules/{name}", "PATCH /schedules/{name}",
    "DELETE /schedules/{name}", "POST /schedules/{name}/pause", "POST /schedules/{name}/resume",
    "POST /schedules/{name}/trigger",
}  # fmt: skip
#: The seeded schedule, and the job type aimed requests use: its payload takes any value.
SCHEDULE = "fuzzed"
ANY_VALUE_TYPE = "value_echo"
FUZZ = settings(
    max_examples=30,  # three backends, every operation: well under a minute in all
    derandomize=True,  # the same examples on every run: CI must not flake
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


class Target:
    """One backend's API, built at import (nothing connects until first use); ``prepare``
    migrates its database and seeds it before any request."""

    def __init__(self, database_url: str, redis_url: str | None = None) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.prefix = f"fuzz{uuid.uuid4().hex[:10]}"
        settings: dict[str, Any] = {
            "database_url": database_url, "redis_url": redis_url, "redis_prefix": self.prefix
        }  # fmt: skip
        self.conveyor = Conveyor(Settings(**settings))
        self.conveyor.registry = jobs_app.registry
        self.api = create_app(self.conveyor)
        self.http = TestClient(self.api)
        self.scheduler = scheduler_for(self.conveyor)
        self.schema = schemathesis.openapi.from_asgi("/openapi.json", self.api).exclude(
            path_regex=STREAM
        )
        self.schema.hook(_aimed_cases(self))
        self.job_ids: list[str] = []

    def prepare(self) -> None:
        engine = make_engine(self.database_url)
        upgrade(engine)
        engine.dispose()
        for handle in [
            self.conveyor.enqueue("add", {"a": 1}),
            self.conveyor.enqueue(ANY_VALUE_TYPE, {"value": {"nested": [1, "two", None]}}),
            self.conveyor.enqueue("add", {"a": 2}, delay=3600),
        ]:
            canonical = handle.id
            self.job_ids += [
                canonical, canonical.upper(), f"urn:uuid:{canonical}", f"{{{canonical}}}",
                canonical.replace("-", ""), f" {canonical}", f"{canonical}\x00",
            ]  # fmt: skip
        self.ensure_schedule()

    def ensure_schedule(self) -> None:
        """(Re)create the seeded schedule: a fuzzed DELETE may have removed it."""
        body = {"name": SCHEDULE, "type": ANY_VALUE_TYPE, "every": 3600}
        response = self.http.post("/schedules", json=body)
        assert response.status_code in (201, 409), response.text

    def forget_schedule(self, name: Any) -> None:
        """Delete a schedule a request is about to create: Hypothesis replays a failing
        request, and the replay must meet what the first call met, not a 409."""
        if isinstance(name, str) and text_problem(name) is None:
            with contextlib.suppress(ConveyorError):
                self.scheduler.store.delete(name)

    def close(self) -> None:
        self.scheduler.store.engine.dispose()
        self.http.close()
        self.conveyor.close()
        if self.redis_url:
            _drop_prefix(self.redis_url, self.prefix)


def _aimed_cases(target: Target) -> Callable[[Any, Case], st.SearchStrategy[Any]]:
    def flatmap_case(context: Any, case: Case) -> st.SearchStrategy[Any]:
        """A schema-valid case as generated, or aimed at what exists (Hypothesis chooses)."""
        meta = case.meta
        if meta is None or meta.generation.mode.is_negative:
            return st.just(case)  # a negative case must stay invalid: left as it is
        if any(component.mode.is_negative for component in meta.components.values()):
            return st.just(case)
        aims = _aims(target, case)
        # Aims first: Hypothesis favours early branches.
        return st.one_of(*aims, st.just(case)) if aims else st.just(case)

    return flatmap_case


def _aims(target: Target, case: Case) -> list[st.SearchStrategy[Any]]:
    """Strategies of ``case`` changed to reach what exists; each change is schema-valid."""

    def changed(path: dict[str, str] | None = None, body: Any = None) -> Case:
        if path:
            case.path_parameters = {**case.path_parameters, **path}
        if body is not None:
            case.body = body
        return case

    aims = []
    if "job_id" in case.path_parameters:
        aims.append(st.sampled_from(target.job_ids).map(lambda i: changed(path={"job_id": i})))
    body = case.body if isinstance(case.body, dict) else None
    label = case.operation.label
    if "name" in case.path_parameters:
        aims.append(st.just(None).map(lambda _: changed({"name": SCHEDULE})))
        if label == "PATCH /schedules/{name}" and body is not None:
            payload = {"payload": {"value": body.get("payload")}}
            aims.append(st.just(None).map(lambda _: changed({"name": SCHEDULE}, payload)))
    if body is None:
        return aims
    if label == "POST /jobs":
        aims.append(st.booleans().map(lambda minimal: changed(body=_any_value_job(body, minimal))))
    elif label == "POST /jobs/batch" and isinstance(jobs := body.get("jobs"), list):
        aims.append(
            st.booleans().map(
                lambda minimal: changed(body={"jobs": [_any_value_job(j, minimal) for j in jobs]})
            )
        )
    elif label == "POST /schedules":
        every: list[float | str] = [3600, "90s"]
        aims.append(st.sampled_from(every).map(lambda e: changed(body=_schedule(body, e))))
    return aims


def _any_value_job(job: Any, minimal: bool) -> Any:
    """A JobCreate body as a job of the type taking any value, its generated payload as that
    value; ``minimal`` keeps only the options any value is valid for."""
    if not isinstance(job, dict):
        return job
    kept = {k: v for k, v in job.items() if not minimal or k in ("queue", "idempotency_key")}
    return {**kept, "type": ANY_VALUE_TYPE, "payload": {"value": job.get("payload")}}


def _schedule(body: dict[str, Any], every: float | str) -> dict[str, Any]:
    """A ScheduleCreate body that passes every rule the schema cannot state, keeping the
    generated name, queue and payload."""
    aimed: dict[str, Any] = {"name": body["name"], "type": ANY_VALUE_TYPE, "every": every}
    aimed["payload"] = {"value": body.get("payload")}
    if body.get("queue") is not None:
        aimed["queue"] = body["queue"]
    return aimed


_PG_DATABASES = [f"conveyor_fuzz_{uuid.uuid4().hex[:10]}" for _ in range(2)]
_PG_SERVER = ensure_postgres().rsplit("/", 1)[0]
_SQLITE_DIR = Path(tempfile.mkdtemp(prefix="conveyor-fuzz-"))
sqlite = Target(f"sqlite:///{_SQLITE_DIR / 'api.db'}")
postgres = Target(f"{_PG_SERVER}/{_PG_DATABASES[0]}")
postgres_redis = Target(f"{_PG_SERVER}/{_PG_DATABASES[1]}", redis_url=ensure_redis())
TARGETS = (sqlite, postgres, postgres_redis)


@pytest.fixture(scope="module", autouse=True)
def databases() -> Iterator[None]:
    """The PostgreSQL databases are this module's own, so no other test's cleanup changes
    what they hold; they are dropped at the end (and the Redis keys deleted)."""
    admin_url = ensure_postgres()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in _PG_DATABASES:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        for target in TARGETS:
            target.prepare()
        yield
    finally:
        for target in TARGETS:
            target.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name in _PG_DATABASES:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(_SQLITE_DIR, ignore_errors=True)


def check(target: Target, case: Case) -> None:
    if case.path_parameters.get("name") == SCHEDULE:
        target.ensure_schedule()
    if case.operation.label == "POST /schedules" and isinstance(case.body, dict):
        target.forget_schedule(case.body.get("name"))
    # Schema-valid requests may still be refused for rules a schema cannot state (an
    # unknown job type, a payload that does not fit it): so no "positive data" check.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


@sqlite.schema.parametrize()
@FUZZ
def test_sqlite_api_conforms_to_its_schema(case: Case) -> None:
    check(sqlite, case)


@postgres.schema.parametrize()
@FUZZ
def test_postgres_api_conforms_to_its_schema(case: Case) -> None:
    check(postgres, case)


@postgres_redis.schema.parametrize()
@FUZZ
def test_postgres_redis_api_conforms_to_its_schema(case: Case) -> None:
    check(postgres_redis, case)


def test_every_operation_in_the_document_is_fuzzed() -> None:
    """Including /schedules: a route missing from the OpenAPI document is never fuzzed."""
    for target in TARGETS:
        document = target.api.openapi()["paths"]
        documented = {
            f"{method.upper()} {path}"
            for path, operations in document.items()
            if not path.endswith("/events")
            for method in operations
        }
        fuzzed = {result.ok().label for result in target.schema.get_all_operations()}  # type: ignore[union-attr]
        assert fuzzed == documented
        assert fuzzed >= SCHEDULE_OPERATIONS
