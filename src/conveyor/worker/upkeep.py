"""A worker's duties beside running jobs — lease renewals, cancel checks, its health — and
its shutdown: drain for the grace period, then hand running jobs back. A part of ``Worker``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo
from conveyor.core.settings import Settings
from conveyor.core.states import State
from conveyor.services import Services
from conveyor.store import ClaimedJob
from conveyor.store.clock import DbClock
from conveyor.worker.ahead import Ahead
from conveyor.worker.context import Run
from conveyor.worker.execute import CANCEL, SHUTDOWN
from conveyor.worker.health import TICK_S, Health
from conveyor.worker.writer import Writer

log = logging.getLogger("conveyor.worker")


class Upkeep:
    """Leases, cancels, health and shutdown (mixed into ``Worker``, whose fields these are)."""

    runs: dict[str, Run]
    ahead: Ahead
    writer: Writer
    settings: Settings
    services: Services
    clock: DbClock
    worker_id: str
    health: Health
    concurrency: int
    grace_s: float
    _hurry: bool
    _stopping: asyncio.Event
    _slot_free: asyncio.Event

    if TYPE_CHECKING:  # the Worker's own

        def request_stop(self) -> None: ...
        def _run(self, job: ClaimedJob) -> Run: ...
        def _record(self, run: Run, attempt: Attempt) -> State | None: ...

        _io: Callable[..., Awaitable[Any]]

    def _owned(self) -> list[tuple[str, int]]:
        return [(job_id, run.job.attempt) for job_id, run in list(self.runs.items())]

    def _leased(self) -> list[tuple[str, int]]:
        """Runs whose leases the heartbeat renews: running ones, and finished ones whose
        finish is not written yet."""
        return self._owned() + self.ahead.owned() + self.writer.pending()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._io(self.clock.sync)  # the database's time, measured again
                await self._io(
                    self.services.runs.renew_leases,
                    self.worker_id,
                    self._leased(),
                    self.clock.now(),
                    self.settings.lease_seconds,
                )
                await self._io(
                    self.services.workers.beat,
                    self.worker_id,
                    len(self.runs),
                    self.clock.now(),
                    self.health.problem(),
                )
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _health_loop(self) -> None:
        """Prove the loop alive to the watchdog; free the slots of threads that returned;
        replace this worker when stuck threads starve it (``worker.health``)."""
        stuck = 0
        while True:
            await asyncio.sleep(TICK_S)
            self.health.tick()
            now_stuck = self.health.stuck()
            if now_stuck < stuck:
                self._slot_free.set()
            stuck = now_stuck
            if self.health.starved() and not self._stopping.is_set():
                self.health.replace_reason = (
                    f"{stuck} of {self.concurrency} slots held by threads that outlived "
                    "their attempt"
                )
                log.error(
                    "%s: stopping to be replaced by a fresh process", self.health.replace_reason
                )
                self.request_stop()

    def _describe_running(self) -> list[str]:
        try:
            return [f"{run.job.id} ({run.job.type})" for run in list(self.runs.values())]
        except RuntimeError:  # changed while another thread read it
            return []

    async def _cancel_loop(self) -> None:
        interval = min(0.5, self.settings.heartbeat_seconds)
        while True:
            await asyncio.sleep(interval)
            owned = self._owned() + self.ahead.owned()
            if not owned:
                continue
            try:
                stop = await self._io(self.services.runs.cancel_requests, owned)
            except Exception as exc:
                log.warning("cancel check failed: %s", exc)
                continue
            for job_id in stop:
                run = self.runs.get(job_id)
                if run is not None:
                    self._interrupt(run, CANCEL)
                    continue
                held = self.ahead.take(job_id)
                if held is not None:  # claimed ahead, canceled before it started
                    canceled = ErrorInfo("Canceled", "canceled before it started")
                    attempt = Attempt(AttemptOutcome.CANCELED, error=canceled)
                    self._record(self._run(held), attempt)

    def _interrupt(self, run: Run, reason: str) -> None:
        # A thread cannot be stopped: a sync handler sees ctx.cancelled (its ctx calls raise)
        # while its attempt is recorded now.
        run.ctx._cancel(reason)
        if run.task is not None:
            run.task.cancel()

    async def _drain(self) -> None:
        """Let running jobs finish for the grace period, then hand the rest back."""
        running = [run.task for run in list(self.runs.values()) if run.task]
        if running and not self._hurry:
            await asyncio.wait(running, timeout=self.grace_s)
            if self.runs and not self._hurry:
                log.warning(
                    "grace period of %g s over: handing back %d running job(s)",
                    self.grace_s,
                    len(self.runs),
                )
        self._hand_back_all()
        remaining = [run.task for run in list(self.runs.values()) if run.task]
        if remaining:
            await asyncio.gather(*remaining, return_exceptions=True)

    def _hand_back_all(self) -> None:
        for run in list(self.runs.values()):
            self._interrupt(run, SHUTDOWN)
