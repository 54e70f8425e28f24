"""Named leases on the database clock: at most one holder at a time, taken over on expiry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.store.clock import db_now
from conveyor.store.errors import translate_errors
from conveyor.store.tables import leases


class LeaseStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @translate_errors
    def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew lease ``name`` for ``holder``; False while someone else holds it."""
        with self.engine.begin() as conn:
            now = db_now(conn)
            expires = now + timedelta(seconds=ttl_s)
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            conn.execute(
                insert(leases)
                .values(name=name, holder=holder, expires_at=expires)
                .on_conflict_do_nothing()
            )
            conn.execute(
                update(leases)
                .where(
                    and_(
                        leases.c.name == name,
                        or_(leases.c.holder == holder, leases.c.expires_at < now),
                    )
                )
                .values(holder=holder, expires_at=expires)
            )
            current = conn.execute(select(leases.c.holder).where(leases.c.name == name))
            return bool(current.scalar_one() == holder)

    @translate_errors
    def release(self, name: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(leases)
                .where(and_(leases.c.name == name, leases.c.holder == holder))
                .values(expires_at=db_now(conn) - timedelta(seconds=1))
            )
