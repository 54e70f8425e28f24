"""Schema migrations (Alembic), run under a lock so concurrent starts do not race.

Whether a schema is current is one statement (the version table's row) compared with the
newest migration script's name: Alembic, whose import and script loading cost a process
start a tenth of a second, is loaded only to migrate.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from conveyor.core.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
#: Alembic's version table (``migrations/env.py`` hands it to Alembic): one row, the revision.
VERSION_TABLE = "conveyor_alembic_version"
_LOCK_KEY = 0x636F6E76  # "conv": advisory lock id for migrations
READ_REVISION = text(f"SELECT version_num FROM {VERSION_TABLE}")


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def known_revisions() -> tuple[str, ...]:
    """Every revision this Conveyor has a script for, oldest first: each script is named
    after its revision (``0010_webhook_due.py`` is ``0010``), and they follow in name order
    (tests/integration/test_schema.py checks both against Alembic's own reading)."""
    names = sorted(p.name for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))
    return tuple(name.split("_", 1)[0] for name in names)


def head_revision() -> str:
    """The revision this Conveyor's code needs."""
    return known_revisions()[-1]


def read_revision(conn: Connection) -> str | None:
    """The schema's revision, in one statement; None when Conveyor's tables were never made
    (no version table, or an empty one)."""
    try:
        rows = conn.execute(READ_REVISION).scalars().all()
    except DBAPIError as exc:
        if not _no_such_table(exc):
            raise
        if conn.in_transaction():
            conn.rollback()  # PostgreSQL: a failed statement leaves the transaction unusable
        return None
    if len(rows) > 1:
        raise ConfigurationError(
            f"{VERSION_TABLE} holds {len(rows)} revisions ({', '.join(sorted(rows))}); "
            "Conveyor's migrations are one line, so it should hold one"
        )
    return rows[0] if rows else None


def _no_such_table(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == "42P01":  # PostgreSQL: undefined_table
        return True
    return "no such table" in str(exc.orig)  # SQLite


def current_revision(engine: Engine) -> str | None:
    """The schema's revision: one connection, one statement, in AUTOCOMMIT (no BEGIN before
    it nor ROLLBACK after it on PostgreSQL; no write lock on SQLite)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return read_revision(conn)


def revision_problem(current: str | None) -> str | None:
    """Why a schema at ``current`` cannot serve this Conveyor (missing, behind, or ahead of
    it), or None when it is current."""
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no Conveyor tables: run `conveyor db upgrade`"
    if is_ahead(current):
        return f"the schema is at revision {current}, newer than this Conveyor ({head}): upgrade it"
    return f"the schema is at revision {current}, this Conveyor needs {head}: run `conveyor db upgrade`"


def is_ahead(current: str | None) -> bool:
    """Whether ``current`` was written by a newer Conveyor (a revision without a script
    here): no migration of ours can serve it."""
    return current is not None and current not in known_revisions()


def schema_problem(engine: Engine) -> str | None:
    """``revision_problem`` of the database's schema (one statement). Raises what
    connecting raises."""
    return revision_problem(current_revision(engine))


def migrate(engine: Engine, current: str | None) -> None:
    """Bring a schema read at ``current`` to head: nothing when it is there, Alembic when it
    is missing or behind. A schema ahead of this Conveyor is a ConfigurationError (its
    ``revision_problem``): migrating cannot help, and older code must not write to it."""
    if current == head_revision():
        return
    if is_ahead(current):
        raise ConfigurationError(revision_problem(current) or "")
    upgrade(engine)


def ensure_current(engine: Engine) -> None:
    """``migrate`` from the revision read now: one statement when the schema is current."""
    migrate(engine, current_revision(engine))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; safe to call from many processes at once."""
    from alembic import command

    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
