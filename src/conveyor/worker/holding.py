"""The worker's side of claiming ahead (``worker.ahead``): held jobs start as slots free,
and go back unstarted when the slots stay busy or the worker stops. A part of ``Worker``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from conveyor.services import Services
from conveyor.store import ClaimedJob
from conveyor.store.clock import DbClock
from conveyor.worker.ahead import HOLD_S, Ahead
from conveyor.worker.writer import Writer

log = logging.getLogger("conveyor.worker")


class Holding:
    """Held jobs: started, watched, handed back (mixed into ``Worker``, whose fields these
    are)."""

    ahead: Ahead
    clock: DbClock
    services: Services
    worker_id: str
    writer: Writer
    _ahead_timer: asyncio.TimerHandle | None
    _stopping: asyncio.Event
    _slot_free: asyncio.Event

    if TYPE_CHECKING:  # the Worker's own

        def _free(self) -> int: ...
        def _start(self, job: ClaimedJob) -> None: ...
        def _background(self, coro: Coroutine[Any, Any, None]) -> None: ...

        _io: Callable[..., Awaitable[Any]]

    def _start_held(self) -> None:
        """Start held jobs while slots are free; their attempts start now, not at the claim."""
        while self.ahead.jobs and not self._stopping.is_set() and self._free() > 0:
            job = self.ahead.next()
            if job is not None:
                job.started_at = self.clock.now()
                self._start(job)

    def _watch_ahead(self) -> None:
        """While jobs are held, look every half ``HOLD_S`` whether the slots still move."""
        if self._ahead_timer is None and self.ahead.jobs:
            loop = asyncio.get_running_loop()
            self._ahead_timer = loop.call_later(HOLD_S / 2, self._check_ahead)

    def _check_ahead(self) -> None:
        self._ahead_timer = None
        if self.ahead.overdue():
            self._background(self._release_ahead())
        else:
            self._watch_ahead()

    async def _release_ahead(self) -> None:
        """Hand back the held jobs unstarted (their slots are busy with long jobs, or the
        worker stops): queued again at once, for any worker, no attempt charged."""
        held = self.ahead.take_all()
        if not held:
            return
        try:
            released = await self._io(
                self.services.runs.release,
                self.worker_id,
                [(job.id, job.attempt) for job in held],
                self.clock.now(),
            )
        except Exception as exc:
            if self._stopping.is_set():
                log.warning(
                    "could not hand back %d job(s) claimed ahead (%s); they are recovered "
                    "when their lease runs out",
                    len(held),
                    exc,
                )
                return
            log.warning("could not hand back %d job(s) claimed ahead (%s)", len(held), exc)
            self.ahead.jobs.extendleft(reversed(held))
            self._watch_ahead()
            return
        log.info("handed back %d job(s) claimed ahead, unstarted", len(released))
        await self.writer.redispatch(released)
        self._slot_free.set()  # claim again when the slots move
