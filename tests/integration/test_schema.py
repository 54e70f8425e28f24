"""Migrations: every revision goes up and down on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, inspect, text

from conveyor.core.errors import ConfigurationError
from conveyor.store import make_engine, schema
from conveyor.store.probe import prepare_database
from conveyor.store.schema import (
    _config,
    current_revision,
    downgrade,
    ensure_current,
    head_revision,
    known_revisions,
    schema_problem,
    upgrade,
)


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


def test_the_revisions_read_from_script_names_are_alembics() -> None:
    scripts = ScriptDirectory.from_config(_config())
    oldest_first = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert list(known_revisions()) == oldest_first
    assert head_revision() == scripts.get_current_head()


def _statements(engine: Engine) -> list[str]:
    """Every statement ``engine`` runs from now on."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_current_schema_is_checked_in_one_statement_without_alembic(
    empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_engine)
    empty_engine.dispose()
    empty_engine.connect().close()  # the dialect's first-connect queries are not the check's
    seen = _statements(empty_engine)
    monkeypatch.setattr(schema, "upgrade", lambda *a: pytest.fail("migrated a current schema"))
    ensure_current(empty_engine)
    assert schema_problem(empty_engine) is None
    assert seen == [str(schema.READ_REVISION)] * 2  # one statement per check, nothing else


def test_a_missing_schema_reads_as_none_and_is_made(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    assert "no Conveyor tables" in (schema_problem(empty_engine) or "")
    ensure_current(empty_engine)
    assert current_revision(empty_engine) == head_revision()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_a_worker_start_migrates_a_schema_behind_and_refuses_one_ahead(
    empty_engine: Engine,
) -> None:
    before_head = known_revisions()[-2]
    upgrade(empty_engine, before_head)
    assert "this Conveyor needs" in (schema_problem(empty_engine) or "")
    prepare_database(_url(empty_engine))
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.begin() as conn:
        conn.execute(text("UPDATE conveyor_alembic_version SET version_num = '9999'"))
    with pytest.raises(ConfigurationError, match="revision 9999, newer than this Conveyor"):
        prepare_database(_url(empty_engine))
    assert current_revision(empty_engine) == "9999"  # untouched
