"""The scheduler: turns schedules into jobs, exactly once per tick, with any number running.

Each pass reads the database clock, plans every due schedule (core.schedule.plan) and
writes each plan in one transaction; a unique (schedule, tick) key decides races.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.client import EnqueueOptions, EnqueueRequest
from conveyor.core.schedule import CatchUp, Spec, plan
from conveyor.store import NewJob, make_engine
from conveyor.store.schedules import Fired, FirePlan, ScheduleStore

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.scheduler")

POLL_S = 0.5


class Scheduler:
    def __init__(self, app: Conveyor, *, poll_s: float = POLL_S) -> None:
        self.app = app
        self.poll_s = poll_s
        # A scheduler frozen inside a transaction (SIGSTOP, a long GC pause) must not hold
        # the others up: the server ends such a transaction after a few seconds.
        self.store = ScheduleStore(
            make_engine(app.settings.database_url, pool_size=2, idle_in_transaction_s=3)
        )

    def sync(self) -> None:
        """Upsert the schedules defined in code; disable those removed from it."""
        defined = [d.as_row() for d in self.app.schedules.values()]
        self.store.sync_code(defined, self.store.db_now())

    def run_once(self) -> list[Fired]:
        """One pass over the due schedules; returns what this scheduler fired."""
        now = self.store.db_now()
        fired: list[Fired] = []
        for row in self.store.due(now):
            try:
                fired += self._apply(row, now)
            except Exception as exc:  # one broken schedule must not stop the others
                log.error("schedule %s: %s", row["name"], exc)
        ready = [(f.queue, f.job_id) for f in fired if f.queue and f.job_id]
        if ready:
            self.app.client.dispatch(ready)
        return fired

    def _apply(self, row: dict[str, Any], now: datetime) -> list[Fired]:
        spec = Spec(cron=row["cron"], every_s=row["every_s"], tz=row["tz"])
        decided = plan(
            spec, row["last_tick_at"], now, CatchUp(row["catch_up"]), created_at=row["created_at"]
        )
        fire_plan = FirePlan(
            row["name"], decided.fire, decided.missed, decided.next_at, row["overlap"]
        )
        return self.store.apply(fire_plan, self._job_maker(row, now), now)

    def trigger(self, name: str) -> Fired:
        row = self.store.get(name)
        now = self.store.db_now()
        fired = self.store.trigger(name, self._job_maker(row, now), now)
        if fired.queue and fired.job_id:
            self.app.client.dispatch([(fired.queue, fired.job_id)])
        return fired

    def _job_maker(self, row: dict[str, Any], now: datetime) -> Callable[[datetime], NewJob]:
        request = EnqueueRequest(
            row["job_type"], row["payload"], EnqueueOptions(queue=row["queue"])
        )
        return lambda _tick: self.app.client.prepare(request, now)

    async def loop(self, stopping: asyncio.Event) -> None:
        """Run passes until ``stopping`` is set; survives database outages."""
        synced = False
        while not stopping.is_set():
            try:
                if not synced:
                    await asyncio.to_thread(self.sync)
                    synced = True
                await asyncio.to_thread(self.run_once)
            except Exception as exc:
                log.warning("scheduler pass failed: %s", exc)
            try:
                await asyncio.wait_for(stopping.wait(), self.poll_s)
            except TimeoutError:
                pass
