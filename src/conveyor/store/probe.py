"""Before a command uses the database: is it there, can we reach it, has it our tables?

Each answer is one error naming the database (its password hidden), so a command line tool
says in one line what is wrong instead of a driver traceback, and a read-only command never
creates an empty SQLite file by opening a path that does not exist.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from conveyor.core.errors import ConfigurationError, DatabaseUnavailable
from conveyor.store.engine import make_engine, normalize_url
from conveyor.store.schema import current_revision, migrate

#: A table every revision has: its absence means `conveyor db upgrade` never ran here.
MARKER_TABLE = "conveyor_jobs"


def shown_url(url: str) -> str:
    """``url`` fit to print: the password replaced by ``***``, a SQLite path made absolute."""
    try:
        parsed = make_url(url)  # as the user wrote it (no driver added)
    except Exception:
        return url.split("://", 1)[0] + "://(unparsable URL)"
    path = sqlite_path(url)
    if path is not None:
        return f"sqlite:///{path.resolve()}"
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names; None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(normalize_url(url))
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def check_database(url: str, *, existing: bool = True, tables: bool = True) -> str:
    """Connect once and return the database as shown (``shown_url``).

    ``existing``: a SQLite file must already exist (commands that only read or enqueue;
    those that migrate create it). ``tables``: Conveyor's schema must be there. Raises
    ConfigurationError or DatabaseUnavailable, each naming the database.
    """
    shown = shown_url(url)
    path = sqlite_path(url)
    if existing and path is not None and not path.exists():
        raise ConfigurationError(
            f"no SQLite database at {path.resolve()} (CONVEYOR_DATABASE_URL={url}): run this "
            "where it is, set CONVEYOR_DATABASE_URL, or create it with `conveyor db upgrade`"
        )
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            present = inspect(conn).has_table(MARKER_TABLE) if tables else True
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot reach the database {shown}: {_reason(exc)}") from exc
    finally:
        engine.dispose()
    if not present:
        raise ConfigurationError(
            f"Conveyor's tables are missing in {shown}; run `conveyor db upgrade`"
        )
    return shown


def prepare_database(url: str) -> str:
    """``check_database`` for a command that migrates (a worker), its schema then brought to
    head: one connection and one statement when it is current already, Alembic only when it
    is missing or behind. A schema ahead of this Conveyor is a ConfigurationError naming the
    database. Returns the database as shown."""
    shown = shown_url(url)
    engine = make_engine(url, pool_size=1)
    try:
        try:
            current = current_revision(engine)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"cannot reach the database {shown}: {_reason(exc)}") from exc
        try:
            migrate(engine, current)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{shown}: {exc.message}") from None
    finally:
        engine.dispose()
    return shown


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's first line (``connection refused``), without SQLAlchemy's wrapping."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
