"""Migrations: every revision goes up and down on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, inspect

from conveyor.store import make_engine
from conveyor.store.schema import current_revision, downgrade, head_revision, upgrade


@pytest.fixture(params=["postgres", "sqlite"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
        yield engine
        engine.dispose()
        return
    server_url = request.getfixturevalue("pg_database").rsplit("/", 1)[0]
    name = f"conveyor_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(f"{server_url}/{name}")
    yield engine
    engine.dispose()
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _attempts_shape(engine: Engine) -> tuple[int, bool, bool]:
    """(foreign keys of the attempts table, whether it has the finish-time index, whether
    jobs have the lease index)."""
    found = inspect(engine)
    indexes = {i["name"] for i in found.get_indexes("conveyor_attempts")}
    job_indexes = {i["name"] for i in found.get_indexes("conveyor_jobs")}
    return (
        len(found.get_foreign_keys("conveyor_attempts")),
        "conveyor_attempts_finished" in indexes,
        "conveyor_jobs_lease" in job_indexes,
    )


def test_hot_path_indexes_and_checks_go_and_come_back_on_downgrade(
    empty_engine: Engine,
) -> None:
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    # The finish path inserts one attempt per job: no per-row foreign key check, no index
    # that nothing reads; claims and lease renewals touch no lease index.
    assert _attempts_shape(empty_engine) == (0, False, False)
    downgrade(empty_engine, "0005")
    assert _attempts_shape(empty_engine) == (1, True, True)
    upgrade(empty_engine)  # again, now from a named foreign key
    assert _attempts_shape(empty_engine) == (0, False, False)
