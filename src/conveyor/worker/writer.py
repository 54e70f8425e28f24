"""The worker's writes, batched: finished attempts, coalesced progress, metric counters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from conveyor.core import metrics
from conveyor.core.errors import WriteRejected
from conveyor.core.outcome import AttemptOutcome, ErrorInfo
from conveyor.core.states import State
from conveyor.dispatch.base import Events, Handoff
from conveyor.store import ClaimedJob, Finish, ProgressUpdate, RunStore
from conveyor.store.errors import describe
from conveyor.store.stats import StatsStore
from conveyor.worker.context import Progress

log = logging.getLogger("conveyor.worker")

METRICS_FLUSH_S = 1.0
IO = Callable[..., Awaitable[Any]]


@dataclass
class Stats:
    claimed: int = 0
    finished: int = 0
    fenced: int = 0  # finishes rejected because the attempt no longer owned the job


class Writer:
    """Collects what running jobs report and writes it in few, fenced transactions.

    A failed write keeps its batch for the next try: results of finished attempts survive
    a database outage and are written (idempotently) when it is back.
    """

    def __init__(
        self,
        runs: RunStore,
        stats_store: StatsStore,
        handoff: Handoff,
        events: Events,
        io: IO,
        now: Callable[[], datetime],
    ) -> None:
        """``handoff``: where jobs handed back at shutdown go; ``events``: who hears of
        changes; ``now``: the database's time (``store.clock.DbClock.now``)."""
        self.runs = runs
        self.now = now
        self.stats_store = stats_store
        self.handoff = handoff
        self.events = events
        self.io = io
        self.stats = Stats()
        self._finishes: list[tuple[Finish, ClaimedJob]] = []
        self._dirty: dict[str, tuple[ClaimedJob, Progress]] = {}
        self._metrics = metrics.new_deltas()
        self._wakeup = asyncio.Event()

    # -- what the worker hands over ---------------------------------------------------------

    def claimed(self, job: ClaimedJob) -> None:
        self.stats.claimed += 1
        if job.wait_s is not None:
            metrics.observe(self._metrics, "job_wait_seconds", job.type, job.queue, job.wait_s)

    def pending(self) -> list[tuple[str, int]]:
        """(job id, attempt) of finished attempts not yet written: their leases are still
        renewed, so a database outage shorter than a lease does not make them look lost."""
        return [(f.job_id, f.attempt) for f, _ in self._finishes]

    def progressed(self, job: ClaimedJob, progress: Progress) -> None:
        self._dirty[job.id] = (job, progress)

    def finished(self, finish: Finish, job: ClaimedJob) -> None:
        self._dirty.pop(job.id, None)  # the finish carries the last report
        self._finishes.append((finish, job))
        self._wakeup.set()

    # -- loops ------------------------------------------------------------------------------

    async def finish_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush_finishes()

    async def progress_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush_progress()
            except Exception as exc:
                log.warning("progress write failed: %s", describe(exc))

    async def metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(METRICS_FLUSH_S)
            await self.flush_metrics()

    async def flush_all(self) -> None:
        await self.flush_progress()
        await self.flush_finishes(final=True)
        await self.flush_metrics()

    # -- flushes ----------------------------------------------------------------------------

    async def flush_finishes(self, final: bool = False) -> None:
        failures = 0
        while self._finishes:
            batch, self._finishes = self._finishes, []
            try:
                written = await self._write(batch)
            except BaseException as exc:
                # Keep the batch (when cancelled at shutdown too: the final flush writes it;
                # a repeated finish changes nothing).
                self._finishes = batch + self._finishes
                if not isinstance(exc, Exception):
                    raise
                failures += 1
                log.warning(
                    "writing %d finished attempt(s) failed (%s); retrying",
                    len(batch),
                    describe(exc),
                )
                if final and failures > 20:
                    log.error("giving up on %d finished attempt(s)", len(self._finishes))
                    return
                # At most a second apart: once the database is back, results are written
                # before the leases they were finished under can be judged lost.
                await asyncio.sleep(min(0.1 * 2**failures, 1.0))
                continue
            accepted = sum(written)
            self.stats.finished += accepted
            self.stats.fenced += len(batch) - accepted
            if accepted < len(batch):  # their lines said how they ended: say it did not stick
                log.warning(
                    "%d finished attempt(s) not recorded: their jobs were recovered elsewhere "
                    "after a lost lease",
                    len(batch) - accepted,
                )
            self._count(batch, fenced=len(batch) - accepted)
            await self.announce([f.job_id for f, _ in batch])
            await self.redispatch(
                [(job.queue, f.job_id) for f, job in batch if f.state is State.QUEUED]
            )

    async def _write(self, batch: list[tuple[Finish, ClaimedJob]]) -> list[int]:
        """Write a batch of finishes: how many passed the fence, per part written. A batch
        the database refuses is split in halves until the finish it refuses stands alone,
        so one bad row never holds back the others (an outage still raises)."""
        try:
            return [await self.io(self.runs.finish, [f for f, _ in batch])]
        except WriteRejected as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                return await self._write(batch[:middle]) + await self._write(batch[middle:])
            return [await self._write_refused(batch[0], exc)]

    async def _write_refused(self, item: tuple[Finish, ClaimedJob], exc: WriteRejected) -> int:
        """The attempt whose finish the database refused fails for good with an error that
        says why (its result, message and stage are dropped)."""
        finish, job = item
        log.error("job %s: the database refused its finish (%s); failing it", job.id, exc.message)
        failed = replace(
            finish,
            state=State.FAILED,
            outcome=AttemptOutcome.ERROR,
            result=None,
            error=ErrorInfo("Unstorable", f"the attempt's outcome could not be stored: {exc}"),
            run_at=None,
            charges_attempt=True,
            stage=None,
            message=None,
        )
        try:
            return int(await self.io(self.runs.finish, [failed]))
        except WriteRejected as again:  # the lease runs out and recovery records the attempt
            log.error("job %s: its failure could not be stored either (%s)", job.id, again)
            return 0

    async def redispatch(self, items: list[tuple[str, str]]) -> None:
        """Hand (queue, job id) pairs queued again to the dispatch (Redis; SQLite's bell)."""
        if not items:
            return
        try:
            await self.io(self.handoff.push, items)
        except Exception as exc:
            log.warning("could not re-dispatch %d job(s): %s", len(items), exc)

    async def flush_progress(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        updates = []
        for job_id, (job, p) in dirty.items():
            p.dirty = False
            updates.append(ProgressUpdate(job_id, job.attempt, p.progress, p.stage, p.message))
        try:
            await self.io(self.runs.save_progress, updates, self.now())
        except WriteRejected:
            await self._save_progress_each(updates)
        except BaseException:
            self._dirty = dirty | self._dirty
            raise
        await self.announce(list(dirty))

    async def _save_progress_each(self, updates: list[ProgressUpdate]) -> None:
        """One by one, dropping the reports the database refuses (the next report or the
        finish carries the job's progress; a refused one must not block the others)."""
        for update in updates:
            try:
                await self.io(self.runs.save_progress, [update], self.now())
            except WriteRejected as exc:
                log.warning("job %s: progress report refused (%s)", update.job_id, exc.message)

    async def announce(self, job_ids: list[str]) -> None:
        """Tell event streams these jobs changed (best effort; they also poll)."""
        if not job_ids or not self.events.may_have_listeners():
            return
        try:
            await self.io(self.events.publish, job_ids)
        except Exception as exc:  # event streams fall back to polling
            log.debug("publishing job events failed: %s", exc)

    async def flush_metrics(self) -> None:
        if not self._metrics:
            return
        deltas, self._metrics = self._metrics, metrics.new_deltas()
        try:
            # Stamped with the flush's minute (the database's clock): a delta lands at most
            # one flush interval late, or the outage's length after a failed write.
            await self.io(self.stats_store.add, deltas, self.now())
        except BaseException as exc:
            for key, amount in deltas.items():  # counters are added: retrying later is exact
                self._metrics[key] += amount
            if not isinstance(exc, Exception):
                raise
            log.warning("metrics write failed: %s", describe(exc))

    def _count(self, batch: list[tuple[Finish, ClaimedJob]], fenced: int) -> None:
        for finish, job in batch:
            name = metrics.OUTCOME_METRICS.get(finish.state)
            if name is not None:
                self._metrics[(name, job.type, job.queue, "")] += 1
            if finish.state in (State.COMPLETED, State.FAILED, State.RETRYING):
                run_s = metrics.seconds_between(job.started_at, finish.finished_at)
                if run_s is not None:
                    metrics.observe(self._metrics, "job_run_seconds", job.type, job.queue, run_s)
        if fenced:
            self._metrics[(metrics.FENCED, "", "", "")] += fenced
