"""The pooled engine: a connection idle past PING_IDLE_S is checked before use."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Engine, text

from conveyor.store import engine as engine_module
from conveyor.store import make_engine
from tests.conftest import libpq_url


@pytest.fixture
def pinging(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """One pooled connection, pinged on every checkout."""
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)
    engine = make_engine(pg_database, pool_size=1)
    yield engine
    engine.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(
    pinging: Engine, pg_database: str
) -> None:
    with pinging.connect() as conn:
        first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(libpq_url(pg_database), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    with pinging.connect() as conn:  # the ping finds it dead: a fresh connection serves
        second = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert second != first


def test_the_ping_leaves_the_connection_as_it_found_it(pinging: Engine) -> None:
    with pinging.connect() as conn:
        conn.execute(text("SELECT 1"))
    with pinging.connect() as conn:  # pinged on this checkout
        raw = conn.connection.dbapi_connection
        assert raw is not None
        assert raw.autocommit is False
        assert raw.info.transaction_status is TransactionStatus.IDLE
        conn.execute(text("CREATE TEMP TABLE pinged (n int)"))
        conn.execute(text("INSERT INTO pinged VALUES (1)"))
        conn.rollback()  # still transactional: the rollback undoes both
        with pytest.raises(Exception, match="pinged"):
            conn.execute(text("SELECT n FROM pinged"))
