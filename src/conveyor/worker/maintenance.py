"""Duties every worker shares: promote due jobs and recover runs whose worker died.

Each step is a small fenced transaction, so any number of workers may run them at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor.core.ids import id_floor
from conveyor.core.outcome import Attempt, AttemptOutcome, Decision, ErrorInfo, decide
from conveyor.core.registry import Registry
from conveyor.core.settings import Settings
from conveyor.core.states import State
from conveyor.dispatch.base import Dispatcher
from conveyor.store import Finish, RunStore, WorkerStore, make_engine
from conveyor.store.clock import DbClock
from conveyor.store.leases import LeaseStore

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.maintenance")

PROMOTE_EVERY_S = 0.25
FEED_GRACE_S = 1.0
HELD_SLACK = 1000  # entries beyond the window a stream may hold (pushes that raced the check)
LEASE_NAME = "maintenance"

IO = Callable[..., Awaitable[Any]]


class Maintenance:
    def __init__(
        self,
        runs: RunStore,
        dispatcher: Dispatcher,
        registry: Registry,
        settings: Settings,
        io: IO,
        clock: DbClock,
    ) -> None:
        """``clock``: the database's time, which leases, due times and retention are on."""
        self.runs = runs
        self.clock = clock
        self.dispatcher = dispatcher
        self.registry = registry
        self.settings = settings
        self.io = io
        self._last_recovery = 0.0
        self.queues: list[str] = []  # the queues whose lost dispatches this worker repairs
        self.leases: LeaseStore | None = None  # with it, one process at a time does the duties
        self.workers: WorkerStore | None = None  # to repair the queues other workers serve
        self.holder = ""
        self.leading = False
        # queue -> id up to which every queued job is known to be in its stream
        self._fed: dict[str, str] = {}

    @classmethod
    def standalone(cls, app: Conveyor, holder: str, queues: list[str]) -> Maintenance:
        """Maintenance with its own connections, for a process that is not a worker."""
        engine = make_engine(app.settings.database_url, pool_size=2)

        async def io(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

        runs = RunStore(engine)
        dispatcher = app.make_dispatcher(holder, engine)
        made = cls(runs, dispatcher, app.registry, app.settings, io, DbClock(engine, sync_s=None))
        made.queues = queues
        made.leases = LeaseStore(engine)
        made.workers = WorkerStore(engine)
        made.holder = holder
        return made

    async def loop(self, stopping: asyncio.Event) -> None:
        try:
            await self._loop(stopping)
        finally:
            if self.leases is not None and self.leading:
                try:
                    await self.io(self.leases.release, LEASE_NAME, self.holder)
                except Exception as exc:
                    log.debug("releasing the maintenance lease failed: %s", exc)

    def lead(self) -> bool:
        """Whether this process performs the duties now (always, without a lease store)."""
        if self.leases is None:
            return True
        ttl_s = max(2.0, 3 * self.settings.reconcile_seconds)
        leading = self.leases.acquire(LEASE_NAME, self.holder, ttl_s)
        if leading != self.leading:
            log.info("%s maintenance duties", "taking over" if leading else "handing over")
        self.leading = leading
        return leading

    async def _loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if not await self.io(self.lead):
                    await asyncio.sleep(min(1.0, self.settings.reconcile_seconds))
                    continue
                full = time.monotonic() - self._last_recovery >= self.settings.reconcile_seconds
                if full:
                    await self.io(self.clock.sync)  # the database's time, measured again
                await self.io(self.promote_due, self.clock.now())
                if full:
                    self._last_recovery = time.monotonic()
                    await self.io(self.recover_expired, self.clock.now())
                await self.io(self.feed, self.clock.now(), full=full)
                if full:
                    await self.io(self.apply_retention, self.clock.now())
            except Exception as exc:
                log.warning("maintenance step failed: %s", exc)
            await asyncio.sleep(min(PROMOTE_EVERY_S, self.settings.reconcile_seconds))

    def promote_due(self, now: datetime) -> int:
        """Scheduled and retrying jobs that are due become queued and are dispatched."""
        promoted = self.runs.promote_due(now)
        if promoted:
            self._push([(queue, job_id) for job_id, queue in promoted])
        return len(promoted)

    def recover_expired(self, now: datetime) -> int:
        """Runs whose lease expired end as ``worker_lost``; retried or failed by policy."""
        expired = self.runs.expired_runs(now)
        if not expired:
            return 0
        finishes = []
        for run in expired:
            policy = self.registry.policy(run.type, run.max_attempts)
            attempt = Attempt(
                AttemptOutcome.WORKER_LOST,
                error=ErrorInfo("WorkerLost", f"worker {run.worker_id} stopped renewing its lease"),
            )
            decision = decide(attempt, policy=policy, attempt_number=run.charged, now=now)
            if run.cancel_requested:  # it was being canceled when its worker died
                decision = Decision(State.CANCELED, error=ErrorInfo("Canceled", "canceled"))
            finishes.append(
                Finish(
                    job_id=run.id,
                    attempt=run.attempt,
                    state=decision.state,
                    outcome=AttemptOutcome.WORKER_LOST,
                    worker_id=run.worker_id,
                    started_at=run.started_at,
                    finished_at=now,
                    error=decision.error,
                    run_at=decision.run_at,
                    expired_before=now,
                )
            )
        recovered = self.runs.finish(finishes)
        if recovered:
            log.warning("recovered %d job(s) from lost workers", recovered)
        return recovered

    def feed(self, now: datetime, *, full: bool = False) -> int:
        """Keep each queue's Redis stream fed from the database, and repair what it lost.

        Redis holds at most ``dispatch_window`` ids per queue; the rest wait in the database.
        On every ``full`` pass (each reconcile interval) the oldest queued jobs that the
        stream does not hold are pushed: ids whose dispatch failed or whose enqueuer died
        after commit, and all of them after Redis restarted empty. Between full passes, a
        stream below half its window is topped up from where the last pass left off (the
        backlog, in id order), without reading the stream back. Duplicates are harmless (a
        claim is conditional).
        """
        if not self.dispatcher.delivers:
            return 0
        window = self.settings.dispatch_window
        before = now - timedelta(seconds=FEED_GRACE_S)  # enqueuers push their own first
        pushed = 0
        for queue in self._served_queues(now):
            if full:  # deliveries a dead worker fetched but never claimed: out again
                pushed += self.dispatcher.reclaim(queue, self.settings.lease_seconds)
            depth = self.dispatcher.depth(queue)
            if depth >= window or (not full and depth >= window // 2):
                continue
            if full or queue not in self._fed:
                pushed += self._repair(queue, before, window, depth)
                continue
            more = self.runs.stale_queued(
                queue, before, limit=window - depth, after=self._fed[queue]
            )
            if more:
                self._push([(queue, job_id) for job_id in more])
                self._fed[queue] = more[-1]
                pushed += len(more)
        return pushed

    def _repair(self, queue: str, before: datetime, window: int, depth: int) -> int:
        """Push the oldest queued ids the stream does not hold; remember how far every
        queued id is now in the stream, for the passes in between."""
        held = self.dispatcher.held(queue, window + HELD_SLACK)
        waiting = self.runs.stale_queued(queue, before, limit=window)
        missing = [job_id for job_id in waiting if job_id not in held][: window - depth]
        if missing:
            self._push([(queue, job_id) for job_id in missing])
        covered, sent = None, set(missing)
        for job_id in waiting:
            if job_id not in held and job_id not in sent:
                break
            covered = job_id
        if len(waiting) < window and covered == (waiting[-1] if waiting else None):
            # Every queued job old enough is in the stream: later ones were created after
            # ``before`` (their enqueuer pushed them) and are fed from there if it could not.
            covered = max(covered or "", id_floor(int(before.timestamp() * 1000)))
        if covered is None:
            self._fed.pop(queue, None)
        else:
            self._fed[queue] = covered
        return len(missing)

    def _served_queues(self, now: datetime) -> list[str]:
        """This worker's queues and those of every live worker (the leader repairs all)."""
        queues = set(self.queues)
        if self.workers is not None:
            since = now - timedelta(seconds=3 * self.settings.heartbeat_seconds)
            for worker in self.workers.alive(since):
                queues.update(worker["queues"])
        return sorted(queues)

    def apply_retention(self, now: datetime, batches: int = 10) -> int:
        """Delete finished jobs past their retention, a bounded number of batches per pass."""
        deleted = 0
        rules = (
            ([State.COMPLETED], self.settings.retention_completed_seconds),
            ([State.FAILED, State.CANCELED], self.settings.retention_failed_seconds),
        )
        for states, ttl_s in rules:
            if ttl_s <= 0:
                continue
            cut = now - timedelta(seconds=ttl_s)
            for _ in range(batches):
                n = self.runs.purge(states, cut)
                deleted += n
                if n < 1000:
                    break
        return deleted

    def _push(self, items: list[tuple[str, str]]) -> None:
        try:
            self.dispatcher.push(items)
        except Exception as exc:
            log.warning("dispatch of %d promoted job(s) failed: %s", len(items), exc)
