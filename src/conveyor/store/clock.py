"""The database's clock: decisions shared between hosts use it, not the hosts' clocks."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, text


def db_now(conn: Connection) -> datetime:
    if conn.dialect.name == "postgresql":
        value: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)
    raw = conn.execute(text("SELECT strftime('%Y-%m-%dT%H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(raw).replace(tzinfo=UTC)
