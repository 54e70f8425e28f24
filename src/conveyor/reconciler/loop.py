"""The reconciler's loop: when each duty runs, and only while this process leads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.reconciler.depth import DepthGauge
from conveyor.reconciler.feed import StreamFeeder
from conveyor.reconciler.leadership import Leadership
from conveyor.reconciler.promote import Promoter
from conveyor.reconciler.rescue import Rescuer
from conveyor.reconciler.retention import Cleaner, MinuteCleaner
from conveyor.reconciler.webhooks import WebhookSweeper
from conveyor.store.clock import DbClock

log = logging.getLogger("conveyor.maintenance")  # the name its log lines have always carried

PROMOTE_EVERY_S = 0.25

#: Runs a blocking call off the event loop (a worker's I/O threads, or ``asyncio.to_thread``).
IO = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Pass:
    """What one pass of every duty did: jobs promoted, rescued, ids fed, jobs deleted,
    queues whose depth was recorded, history rows deleted, webhook delivery jobs made."""

    promoted: int
    rescued: int
    fed: int
    deleted: int
    gauged: int = 0
    minutes_deleted: int = 0
    webhooks: int = 0


class Reconciler:
    """Runs the duties while ``leadership`` leads: promotion every
    ``min(PROMOTE_EVERY_S, reconcile_s)``; every ``reconcile_s`` a full pass (the clock
    measured again, rescue, a full feed, retention); stream top-ups on the passes between;
    the depth gauges at the first pass of each minute; webhook delivery jobs on every pass.
    ``feeder=None``: database dispatch, no streams to feed. Every step is a small fenced
    transaction, so two processes that both think they lead are still safe."""

    def __init__(
        self,
        leadership: Leadership,
        clock: DbClock,
        io: IO,
        *,
        promoter: Promoter,
        rescuer: Rescuer,
        cleaner: Cleaner,
        depth: DepthGauge,
        minute_cleaner: MinuteCleaner,
        feeder: StreamFeeder | None,
        reconcile_s: float,
        webhooks: WebhookSweeper | None = None,
    ) -> None:
        self.leadership = leadership
        self.clock = clock
        self.io = io
        self.promoter = promoter
        self.rescuer = rescuer
        self.cleaner = cleaner
        self.depth = depth
        self.minute_cleaner = minute_cleaner
        self.feeder = feeder
        self.reconcile_s = reconcile_s
        self.webhooks = webhooks
        self._last_full = 0.0  # the monotonic time of the last full pass

    def run_once(self, now: datetime, full: bool = True) -> Pass:
        """Every duty once, in the loop's order, at ``now`` (blocking; for tests and tools).
        ``full=False``: a pass between full ones (promotion and stream top-ups only)."""
        return Pass(
            promoted=self.promoter.run_once(now),
            rescued=self.rescuer.run_once(now) if full else 0,
            fed=self.feeder.run_once(now, full) if self.feeder is not None else 0,
            deleted=self.cleaner.run_once(now) if full else 0,
            gauged=self.depth.run_once(now),
            minutes_deleted=self.minute_cleaner.run_once(now) if full else 0,
            webhooks=self.webhooks.run_once(now) if self.webhooks is not None else 0,
        )

    async def loop(self, stopping: asyncio.Event) -> None:
        """Run until ``stopping`` is set, then give the lease up if this process held it."""
        try:
            await self._loop(stopping)
        finally:
            if self.leadership.leading:
                try:
                    await self.io(self.leadership.release)
                except Exception as exc:
                    log.debug("releasing the maintenance lease failed: %s", exc)

    async def _loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if not await self.io(self.leadership.lead):
                    await asyncio.sleep(min(1.0, self.reconcile_s))
                    continue
                await self._pass()
            except Exception as exc:
                log.warning("maintenance step failed: %s", exc)
            await asyncio.sleep(min(PROMOTE_EVERY_S, self.reconcile_s))

    async def _pass(self) -> None:
        """One pass; each duty reads the clock as it starts."""
        io, clock = self.io, self.clock
        full = time.monotonic() - self._last_full >= self.reconcile_s
        if full:
            await io(clock.sync)  # the database's time, measured again
        await io(self.promoter.run_once, clock.now())
        if self.webhooks is not None:
            await io(self.webhooks.run_once, clock.now())
        if full:
            self._last_full = time.monotonic()
            await io(self.rescuer.run_once, clock.now())
        if self.feeder is not None:
            await io(self.feeder.run_once, clock.now(), full)
        if self.depth.due(clock.now()):  # once a minute
            await io(self.depth.run_once, clock.now())
        if full:
            await io(self.cleaner.run_once, clock.now())
            await io(self.minute_cleaner.run_once, clock.now())
