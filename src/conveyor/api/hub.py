"""One pub/sub subscription per API process, fanned out to the event streams that wait."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

log = logging.getLogger("conveyor.api")


class EventHub:
    """Fed by Redis pub/sub, or by PostgreSQL LISTEN/NOTIFY under database dispatch."""

    def __init__(self, changes: Callable[[], AsyncIterator[str]]) -> None:
        self.changes = changes
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def watch(self, job_id: str) -> asyncio.Event:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen())
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        return event

    def unwatch(self, job_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[job_id]

    async def _listen(self) -> None:
        failures = 0
        while self._waiters:
            try:
                self.connected.set()
                async for job_id in self.changes():
                    failures = 0
                    for event in self._waiters.get(job_id, ()):
                        event.set()
                    if not self._waiters:
                        return
            except Exception as exc:  # streams poll meanwhile
                self.connected.clear()
                failures += 1
                log.warning("event subscription failed (%s); retrying", exc)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
