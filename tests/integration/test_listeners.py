"""Database dispatch on PostgreSQL: NOTIFY only while an event stream holds a listener lease."""

from __future__ import annotations

import asyncio

import psycopg

from conveyor.store import make_engine
from conveyor.store.notify import EVENTS_CHANNEL, NotifyEvents, pg_job_changes


def _notices(url: str, publish: NotifyEvents, ids: list[str]) -> list[str]:
    """What a bare LISTEN connection hears while ``publish`` sends ``ids``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {EVENTS_CHANNEL}")
        publish.publish(ids)
        return [n.payload for n in conn.notifies(timeout=0.5)]


def test_notices_are_sent_only_while_a_stream_holds_a_listener_lease(pg_database: str) -> None:
    engine = make_engine(pg_database)
    try:
        idle = NotifyEvents(engine)
        assert _notices(pg_database, idle, ["a1"]) == []  # nobody holds a lease: no NOTIFY
        assert not idle.may_have_listeners()

        async def stream() -> tuple[list[str], bool]:
            changes = pg_job_changes(pg_database)
            first = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0.5)  # LISTEN and the lease are in place
            publisher = NotifyEvents(engine)  # fresh: asks for listeners at once
            await asyncio.to_thread(publisher.publish, ["b1", "b2"])
            got = [await asyncio.wait_for(first, 5), await asyncio.wait_for(anext(changes), 5)]
            listening = publisher.may_have_listeners()
            await changes.aclose()
            return got, listening

        got, listening = asyncio.run(stream())
        assert got == ["b1", "b2"]
        assert listening
        with engine.connect() as conn:  # the lease went with the stream
            held = conn.exec_driver_sql(
                "SELECT count(*) FROM conveyor_leases WHERE name LIKE 'listen:%%'"
            ).scalar()
        assert held == 0
        assert _notices(pg_database, NotifyEvents(engine), ["c1"]) == []
    finally:
        engine.dispose()
