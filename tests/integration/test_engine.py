"""The pooled engine: a connection idle past PING_IDLE_S is checked before use."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import text

from conveyor.store import engine as engine_module
from conveyor.store import make_engine


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)
    engine = make_engine(pg_database, pool_size=1)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(_psycopg_url(pg_database), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with engine.connect() as conn:  # the ping finds it dead: a fresh connection serves
            second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        engine.dispose()


def test_the_ping_leaves_the_connection_as_it_found_it(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)
    engine = make_engine(pg_database, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        with engine.connect() as conn:  # pinged on this checkout
            raw = conn.connection.dbapi_connection
            assert raw is not None
            assert raw.autocommit is False
            assert raw.info.transaction_status is TransactionStatus.IDLE
            conn.execute(text("CREATE TEMP TABLE pinged (n int)"))
            conn.execute(text("INSERT INTO pinged VALUES (1)"))
            conn.rollback()  # still transactional: the rollback undoes both
            with pytest.raises(Exception, match="pinged"):
                conn.execute(text("SELECT n FROM pinged"))
    finally:
        engine.dispose()
