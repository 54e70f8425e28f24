"""Job-change notices over Redis pub/sub, for event streams to wake up at once (PostgreSQL's
LISTEN/NOTIFY counterpart is ``store.notify.pg_job_changes``)."""

from __future__ import annotations

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
