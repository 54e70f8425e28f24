"""Named leases on the database clock: at most one holder at a time, taken over on expiry.

Event-stream listeners hold leases too, in raw SQL (``HOLD_LISTENER``, ``DROP_LISTENER``):
they run on a psycopg connection of their own, not an engine (see ``store.notify``).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, and_, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.store.clock import db_now
from conveyor.store.errors import translate_errors
from conveyor.store.tables import leases

_NAMES = {c.name: c.name for c in leases.c} | {"leases": leases.name}

#: Take or renew a listener's lease: parameters its name and its time to live in seconds.
HOLD_LISTENER = (
    "INSERT INTO {leases} ({name}, {holder}, {expires_at})"
    " VALUES (%s, 'event stream', now() + make_interval(secs => %s))"
    " ON CONFLICT ({name}) DO UPDATE SET {expires_at} = EXCLUDED.{expires_at}"
).format_map(_NAMES)
#: Drop a listener's lease: parameter its name.
DROP_LISTENER = "DELETE FROM {leases} WHERE {name} = %s".format_map(_NAMES)
#: Whether any unexpired lease's name starts with ``:prefix``.
ANY_LISTENER = text(
    "SELECT EXISTS (SELECT 1 FROM {leases}"
    " WHERE starts_with({name}, :prefix) AND {expires_at} > now())".format_map(_NAMES)
)


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
