"""Engines for PostgreSQL (psycopg 3) and SQLite (WAL, BEGIN IMMEDIATE)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool

from conveyor.core.errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Pick the driver for the user: plain postgresql:// URLs use psycopg 3."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


# Seconds a pooled connection may sit idle before it is checked on checkout.
PING_IDLE_S = 1.0


def make_engine(url: str, *, pool_size: int = 5, idle_in_transaction_s: float = 0) -> Engine:
    """An engine for ``url``. On PostgreSQL, ``idle_in_transaction_s`` makes the server end a
    transaction whose client stopped mid-way (frozen, not dead), releasing its locks."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(f"CONVEYOR_DATABASE_URL: cannot parse {url!r}: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend != "postgresql":
        raise ConfigurationError(
            f"CONVEYOR_DATABASE_URL: {backend!r} is not supported; use postgresql:// or sqlite://"
        )
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    if idle_in_transaction_s:
        timeout_ms = int(idle_in_transaction_s * 1000)
        connect_args["options"] = f"-c idle_in_transaction_session_timeout={timeout_ms}"
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args=connect_args,
        hide_parameters=True,  # errors and logs never show payloads, results or secrets
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle for a while: a busy pool
    skips the round trip (every statement would pay it), an idle one still finds the
    connections a database restart broke. A connection that breaks while in use fails its
    statement, which invalidates the whole pool, as with a ping.

    The ping is one round trip: in autocommit, ``SELECT 1`` opens no transaction (otherwise
    psycopg sends BEGIN before it and a ROLLBACK must follow: three, which the first job
    after a quiet second paid on enqueue and again on claim)."""

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        last = record.info.get("checked_in_at")
        if last is not None and time.monotonic() - last > PING_IDLE_S:
            try:
                autocommit = dbapi_conn.autocommit
                dbapi_conn.autocommit = True
                try:
                    dbapi_conn.execute("SELECT 1")
                finally:
                    dbapi_conn.autocommit = autocommit
            except Exception as exc:
                raise DisconnectionError(f"stale pooled connection: {exc}") from exc

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()


def _sqlite_engine(url: str) -> Engine:
    # A fresh connection per checkout keeps SQLite files free of cross-thread surprises;
    # opening one costs microseconds.
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"check_same_thread": False}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Every transaction takes the write lock up front: read-then-write transactions
        # cannot lose updates, and busy_timeout applies instead of SQLITE_BUSY mid-way.
        # A connection in AUTOCOMMIT runs each statement on its own (a lone read, such as
        # the schema's revision, then waits for no writer); NullPool ends that mode with
        # the checkout.
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
