"""The scheduler: turns schedules into jobs, exactly once per tick, with any number running.

Each pass reads the database clock, plans every due schedule (core.schedule.plan) and
writes each plan in one transaction; a unique (schedule, tick) key decides races.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from conveyor.app import Conveyor
from conveyor.client import Client, EnqueueOptions, EnqueueRequest
from conveyor.core.logs import log_job
from conveyor.core.periodic import ScheduleDef
from conveyor.core.schedule import CatchUp, Spec, plan
from conveyor.reconciler import Reconciler, build_reconciler
from conveyor.services import Services
from conveyor.store import NewJob
from conveyor.store.schedules import Fired, FirePlan, ScheduleStore

log = logging.getLogger("conveyor.scheduler")

POLL_S = 0.5
#: After a failed pass the next waits this long, doubling with each failure in a row.
BACKOFF_CAP_S = 30.0


class Backoff:
    """When to try again after failures in a row: ``first_s``, doubling up to ``cap_s``; a
    success starts over. A database outage then costs one warning per try, not several a
    second. Time is passed in (monotonic seconds)."""

    def __init__(self, first_s: float = POLL_S, cap_s: float = BACKOFF_CAP_S) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.failures = 0
        self.until = 0.0

    def failed(self, now: float) -> float:
        """Count a failure; the seconds until the next try."""
        self.failures += 1
        delay = min(self.cap_s, self.first_s * 2.0 ** (self.failures - 1))
        self.until = max(self.until, now + delay)
        return delay

    def succeeded(self) -> bool:
        """Start over; True when this ends a run of failures."""
        ended, self.failures, self.until = self.failures > 0, 0, 0.0
        return ended

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.until - now)


async def _pause(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stopping`` is set meanwhile."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass


class BackedOffIO:
    """The reconciler's ``io`` in ``conveyor scheduler``: ``asyncio.to_thread``, except that
    after a failure the next step waits out the shared ``backoff`` (or until stopping)."""

    def __init__(self, backoff: Backoff, stopping: asyncio.Event) -> None:
        self.backoff = backoff
        self.stopping = stopping

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        wait_s = self.backoff.remaining_s(time.monotonic())
        if wait_s > 0:
            await _pause(self.stopping, wait_s)
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except Exception:
            self.backoff.failed(time.monotonic())
            raise
        self.backoff.succeeded()
        return result


class Scheduler:
    def __init__(
        self,
        definitions: Mapping[str, ScheduleDef],
        store: ScheduleStore,
        client: Client,
        *,
        poll_s: float = POLL_S,
        backoff: Backoff | None = None,
    ) -> None:
        """``definitions``: the schedules defined in code (``app.schedules``); ``client``
        validates the jobs they make and hands them to workers; ``backoff``: spaces out
        passes while they fail (shared with the process's reconciler)."""
        self.definitions = definitions
        self.store = store
        self.client = client
        self.poll_s = poll_s
        self.backoff = Backoff(poll_s) if backoff is None else backoff

    def sync(self) -> None:
        """Upsert the schedules defined in code; disable those removed from it."""
        defined = [d.as_row() for d in self.definitions.values()]
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
            self.client.dispatch(ready)
        return fired

    def _apply(self, row: dict[str, Any], now: datetime) -> list[Fired]:
        spec = Spec(cron=row["cron"], every_s=row["every_s"], tz=row["tz"])
        decided = plan(
            spec, row["last_tick_at"], now, CatchUp(row["catch_up"]), created_at=row["created_at"]
        )
        fire_plan = FirePlan(
            row["name"], decided.fire, decided.missed, decided.next_at, row["overlap"]
        )
        fired = self.store.apply(fire_plan, self._job_maker(row, now), now)
        for fire in fired:
            _log_fire(row, fire)
        return fired

    def trigger(self, name: str) -> Fired:
        row = self.store.get(name)
        now = self.store.db_now()
        fired = self.store.trigger(name, self._job_maker(row, now), now)
        _log_fire(row, fired)
        if fired.queue and fired.job_id:
            self.client.dispatch([(fired.queue, fired.job_id)])
        return fired

    def _job_maker(self, row: dict[str, Any], now: datetime) -> Callable[[datetime], NewJob]:
        request = EnqueueRequest(
            row["job_type"], row["payload"], EnqueueOptions(queue=row["queue"])
        )
        return lambda _tick: self.client.prepare(request, now)

    async def loop(self, stopping: asyncio.Event) -> None:
        """Run passes until ``stopping`` is set; survives database outages, backing off
        while passes fail."""
        synced = False
        while not stopping.is_set():
            try:
                if not synced:
                    await asyncio.to_thread(self.sync)
                    synced = True
                await asyncio.to_thread(self.run_once)
            except Exception as exc:
                delay = self.backoff.failed(time.monotonic())
                log.warning("scheduler pass failed: %s; next try in %g s", exc, delay)
            else:
                if self.backoff.succeeded():
                    log.warning("scheduler passes succeed again")
            wait_s = self.backoff.remaining_s(time.monotonic())
            await _pause(stopping, max(self.poll_s, wait_s))


def _log_fire(row: dict[str, Any], fire: Fired) -> None:
    """A line per fire: the job it enqueued (with the job's fields), or why it made none."""
    name, tick = row["name"], fire.tick_at.isoformat()
    if fire.job_id and fire.queue:
        log_job(log, logging.INFO, "scheduled", f"enqueued by schedule {name} ({fire.outcome}, "
                f"tick {tick})", job_id=fire.job_id, job_type=row["job_type"], queue=fire.queue,
                attempt=0, schedule=name)  # fmt: skip
    else:
        log.info("schedule %s: tick %s %s, no job enqueued", name, tick, fire.outcome,
                 extra={"event": f"schedule_{fire.outcome}", "schedule": name})  # fmt: skip


def scheduler_for(app: Conveyor) -> Scheduler:
    """``app``'s scheduler on the app's own connections (the API, ``conveyor schedules``)."""
    return Scheduler(app.schedules, app.services.schedules, app.client)


def shared_scheduler(state: Any, app: Conveyor) -> Scheduler:
    """The one scheduler of an API application (its HTTP routes and its dashboard alike),
    made on first use on the app's own connections and kept on ``state``."""
    scheduler: Scheduler | None = getattr(state, "scheduler", None)
    if scheduler is None:
        scheduler = state.scheduler = scheduler_for(app)
    return scheduler


def build_scheduler_process(app: Conveyor, stopping: asyncio.Event) -> tuple[Scheduler, Reconciler]:
    """``conveyor scheduler``: the scheduler, and the reconciler duties (taken when no
    worker holds them), on connections of their own, backing off together while the
    database fails (``stopping`` cuts a backoff short)."""
    holder = f"scheduler:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    services = Services.build(app.settings, consumer=holder, pool_size=2, clock_sync_s=None)
    queues = sorted({t.queue for t in app.registry})
    backoff = Backoff()
    reconciler = build_reconciler(
        upkeep=services.upkeep,
        runs=services.runs,
        workers=services.workers,
        leases=services.leases,
        handoff=services.handoff,
        streams=services.streams,
        clock=services.clock,
        io=BackedOffIO(backoff, stopping),
        registry=app.registry,
        settings=services.settings,
        holder=holder,
        queues=queues,
        stats=services.stats,
    )
    scheduler = Scheduler(app.schedules, services.schedules, app.client, backoff=backoff)
    return scheduler, reconciler
