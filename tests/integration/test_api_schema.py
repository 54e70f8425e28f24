"""Schemathesis against /openapi.json: no 5xx, and every response fits the schema."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.apps.jobs import app as jobs_app


def _api():  # type: ignore[no-untyped-def]
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='conveyor-schemathesis-')) / 'api.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    conveyor = Conveyor(Settings(database_url=url))
    conveyor.registry = jobs_app.registry
    conveyor.enqueue("add", {"a": 1})  # something for the read routes to find
    return create_app(conveyor)


schema = schemathesis.openapi.from_asgi("/openapi.json", _api()).exclude(
    path_regex=r".*/events$"  # a stream that lasts until its job ends: tested with uvicorn
)


@schema.parametrize()
@settings(
    max_examples=50,
    derandomize=True,  # the same examples on every run: CI must not flake
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # Schema-valid requests may still be refused for rules a schema cannot state (an
    # unknown job type, a payload that does not fit it): so no "positive data" check.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
