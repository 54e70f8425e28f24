"""Job-change notices over Redis pub/sub, for event streams to wake up at once."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from conveyor.dispatch import keys


async def job_changes(url: str, prefix: str) -> AsyncIterator[str]:
    """Ids of jobs as they change, until the connection fails (the caller reconnects)."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=3)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(keys.events_channel(prefix))
        async for message in pubsub.listen():
            data = message.get("data")
            if isinstance(data, bytes):
                yield data.decode()
            elif isinstance(data, str):
                yield data
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        await client.aclose()


async def pg_job_changes(url: str) -> AsyncIterator[str]:
    """The same from PostgreSQL LISTEN/NOTIFY (database dispatch on PostgreSQL), holding a
    listener lease meanwhile so that publishers know someone listens."""
    import psycopg

    from conveyor.dispatch import database as db

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5)
    lease = f"{db.LISTENER_PREFIX}{uuid.uuid4().hex}"
    try:
        await conn.execute(f"LISTEN {db.CHANNEL}")
        while True:
            await conn.execute(db.HOLD_LISTENER, (lease, db.LISTENER_TTL_S))
            async for notice in conn.notifies(timeout=db.LISTENER_TTL_S / 3):
                for job_id in notice.payload.split(","):
                    if job_id:
                        yield job_id
    finally:
        with contextlib.suppress(Exception):
            await conn.execute(db.DROP_LISTENER, (lease,))
        await conn.close()
