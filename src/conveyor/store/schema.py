"""Schema migrations (Alembic), run under a lock so concurrent starts do not race."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x636F6E76  # "conv": advisory lock id for migrations


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str | None:
    """The revision this Conveyor's code needs (read from the migration scripts once)."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def schema_problem(engine: Engine) -> str | None:
    """Why the database's schema cannot serve this Conveyor (missing, behind, or ahead of
    it), or None when it is current. Raises what connecting raises."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no Conveyor tables: run `conveyor db upgrade`"
    try:
        known = ScriptDirectory.from_config(_config()).get_revision(current) is not None
    except Exception:  # alembic raises for a revision it has no script of
        known = False
    if not known:
        return f"the schema is at revision {current}, newer than this Conveyor ({head}): upgrade it"
    return f"the schema is at revision {current}, this Conveyor needs {head}: run `conveyor db upgrade`"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": "conveyor_alembic_version"}
        )
        return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; safe to call from many processes at once."""
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
