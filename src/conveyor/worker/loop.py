"""The worker: fetch -> claim -> execute -> apply the outcome, many jobs at once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.core import metrics
from conveyor.core.errors import UnknownJobType
from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo, decide
from conveyor.core.retry import RetryPolicy
from conveyor.core.shares import Shares
from conveyor.core.states import State
from conveyor.store import ClaimedJob, Finish, ProgressUpdate, RunStore, WorkerStore, make_engine
from conveyor.store.schema import upgrade
from conveyor.store.stats import StatsStore
from conveyor.worker.context import Context, Progress
from conveyor.worker.execute import CANCEL, SHUTDOWN, execute
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.source import DatabaseSource, RedisSource

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")

MAX_CLAIM_BATCH = 200
FETCH_BLOCK_S = 1.0
METRICS_FLUSH_S = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_queues(app: Conveyor) -> dict[str, int]:
    """CONVEYOR_QUEUES when set; otherwise every queue a registered job type uses."""
    from conveyor.core.settings import parse_queues

    if "queues" in app.settings.model_fields_set or not len(app.registry):
        return parse_queues(app.settings.queues)
    return dict.fromkeys(sorted({t.queue for t in app.registry}), 1)


@dataclass
class Run:
    job: ClaimedJob
    ctx: Context
    progress: Progress
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Stats:
    claimed: int = 0
    finished: int = 0
    fenced: int = 0  # finishes rejected because the attempt no longer owned the job


class Worker:
    def __init__(
        self,
        app: Conveyor,
        *,
        queues: dict[str, int] | None = None,
        concurrency: int | None = None,
        strict: bool = False,
        grace_s: float | None = None,
        worker_id: str | None = None,
        migrate: bool = True,
    ) -> None:
        self.app = app
        self.settings = settings = app.settings
        self.queues = queues or default_queues(app)
        self.concurrency = concurrency or settings.concurrency
        self.shares = Shares(self.queues, strict=strict)
        self.grace_s = settings.grace_seconds if grace_s is None else grace_s
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.migrate = migrate
        self.stats = Stats()
        self.runs: dict[str, Run] = {}
        self._finishes: list[tuple[Finish, ClaimedJob]] = []
        self._metrics: Counter[metrics.Key] = Counter()
        self._finish_wakeup = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._hurry = False
        self._dirty: dict[str, Run] = {}  # runs with progress not yet written

    # -- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop claiming and drain within the grace period. Second: hurry."""
        if self._stopping.is_set():
            self._hurry = True
            self._hand_back_all()
        self._stopping.set()
        self._slot_free.set()

    async def run(self) -> None:
        self._setup()
        try:
            await self._io(
                self.worker_store.register,
                self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                concurrency=self.concurrency,
                now=utcnow(),
            )
            log.info("worker %s serving %s", self.worker_id, self.queues)
            loops = [
                self._finisher_loop(),
                self._heartbeat_loop(),
                self._cancel_loop(),
                self._progress_loop(),
                self._metrics_loop(),
                self.maintenance.loop(self._stopping),
            ]
            background = [asyncio.create_task(c) for c in loops]
            await self._fetch_loop()
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._flush_progress()
            await self._flush_finishes(final=True)
            await self._flush_metrics()
            await self._io(self.worker_store.stop, self.worker_id, utcnow())
        finally:
            self._teardown()
            self._stopped.set()

    def _setup(self) -> None:
        engine = make_engine(self.settings.database_url, pool_size=6)
        if self.migrate:
            logging.getLogger("alembic").setLevel(logging.WARNING)
            upgrade(engine)
        self.engine = engine
        self.run_store = RunStore(engine)
        self.worker_store = WorkerStore(engine)
        self.stats_store = StatsStore(engine)
        self.dispatcher = self.app.make_dispatcher(self.worker_id)
        self.io = ThreadPoolExecutor(4, thread_name_prefix="conveyor-io")
        self.fetch_io = ThreadPoolExecutor(1, thread_name_prefix="conveyor-fetch")
        self.threads = ThreadPoolExecutor(self.concurrency + 4, thread_name_prefix="conveyor-job")
        lease_s = self.settings.lease_seconds
        self.source: DatabaseSource | RedisSource
        if self.dispatcher.delivers:
            self.source = RedisSource(self.run_store, self.dispatcher, self.worker_id, lease_s)
        else:
            self.source = DatabaseSource(self.run_store, self.worker_id, lease_s)
        self.maintenance = Maintenance(
            self.run_store, self.dispatcher, self.app.registry, self.settings, self._io
        )
        self.maintenance.queues = list(self.queues)

    def _teardown(self) -> None:
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.io.shutdown(wait=True)
        self.fetch_io.shutdown(wait=True)
        self.dispatcher.close()
        self.engine.dispose()

    async def _io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io, lambda: fn(*args, **kwargs))

    # -- fetch and run ----------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        block_s = FETCH_BLOCK_S if self.dispatcher.delivers else self.settings.poll_seconds
        failures = 0
        while not self._stopping.is_set():
            free = min(self.concurrency - len(self.runs), MAX_CLAIM_BATCH)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                claimed = await loop.run_in_executor(
                    self.fetch_io, self.source.claim, self.shares, free, block_s
                )
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("claim failed (%s); retrying", exc)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            for job in claimed:
                self._start(job)
        try:
            await loop.run_in_executor(self.fetch_io, self.source.release)
        except Exception as exc:
            log.warning("could not hand back fetched ids (%s); the reconciler will", exc)

    def _start(self, job: ClaimedJob) -> None:
        self.stats.claimed += 1
        wait_s = metrics.seconds_between(job.ready_at, job.started_at)
        if wait_s is not None:
            metrics.observe(self._metrics, "job_wait_seconds", job.type, job.queue, wait_s)
        progress = Progress(job.progress, job.stage)
        stages = ()
        if job.type in self.app.registry:
            stages = self.app.registry.get(job.type).stages
        ctx = Context(
            job_id=job.id,
            job_type=job.type,
            queue=job.queue,
            attempt=job.attempt,
            stages=stages,
            progress=progress,
            on_dirty=self._mark_dirty,
        )
        run = Run(job, ctx, progress)
        self.runs[job.id] = run
        run.task = asyncio.create_task(self._execute(run), name=f"job-{job.id}")

    async def _execute(self, run: Run) -> None:
        job = run.job
        try:
            attempt = await self._attempt(run)
        except asyncio.CancelledError:
            attempt = Attempt(AttemptOutcome.SHUTDOWN, error=ErrorInfo("Shutdown", "worker exit"))
        except Exception as exc:  # a bug of ours, not the handler's: record it, keep going
            log.exception("job %s: attempt failed inside the worker", job.id)
            attempt = Attempt(AttemptOutcome.ERROR, error=ErrorInfo.from_exception(exc))
        self._record(run, attempt)
        self.runs.pop(job.id, None)
        run.done.set()
        self._slot_free.set()

    async def _attempt(self, run: Run) -> Attempt:
        job = run.job
        try:
            job_type = self.app.registry.get(job.type)
        except UnknownJobType as exc:
            from conveyor.core.errors import Permanent

            return Attempt(
                AttemptOutcome.ERROR, error=ErrorInfo.from_exception(exc), exception=Permanent()
            )
        return await execute(
            job_type,
            job.payload,
            run.ctx,
            timeout_s=job.timeout_s,
            threads=self.threads,
            max_result_bytes=self.settings.max_result_bytes,
        )

    def _record(self, run: Run, attempt: Attempt) -> None:
        job = run.job
        if attempt.outcome is AttemptOutcome.WORKER_LOST:
            return  # the job is no longer ours: whoever recovered it records the attempt
        policy = self._policy(job.type, job.max_attempts)
        now = utcnow()
        decision = decide(attempt, policy=policy, attempt_number=job.charged, now=now)
        finish = Finish(
            job_id=job.id,
            attempt=job.attempt,
            state=decision.state,
            outcome=attempt.outcome,
            worker_id=self.worker_id,
            started_at=job.started_at,
            finished_at=now,
            result=decision.result,
            error=decision.error,
            run_at=decision.run_at,
            charges_attempt=decision.charges_attempt,
            progress=run.progress.progress,
            stage=run.progress.stage,
            message=run.progress.message,
        )
        self._dirty.pop(job.id, None)  # the finish carries the last report
        self._finishes.append((finish, job))
        self._finish_wakeup.set()

    def _policy(self, job_type: str, max_attempts: int) -> RetryPolicy:
        base = self.app.registry.get(job_type).policy if job_type in self.app.registry else None
        if base is None:
            return RetryPolicy(max_attempts=max_attempts)
        if base.max_attempts == max_attempts:
            return base
        return RetryPolicy(
            max_attempts=max_attempts,
            base_s=base.base_s,
            cap_s=base.cap_s,
            retry_on=base.retry_on,
            dont_retry_on=base.dont_retry_on,
        )

    # -- writes -----------------------------------------------------------------------------

    async def _finisher_loop(self) -> None:
        while True:
            await self._finish_wakeup.wait()
            self._finish_wakeup.clear()
            await self._flush_finishes()

    async def _flush_finishes(self, final: bool = False) -> None:
        failures = 0
        while self._finishes:
            batch, self._finishes = self._finishes, []
            try:
                accepted = await self._io(self.run_store.finish, [f for f, _ in batch])
            except BaseException as exc:
                # Keep the results and write them when the database is back (or, when this
                # task is cancelled at shutdown, in the final flush; writes are idempotent).
                self._finishes = batch + self._finishes
                if not isinstance(exc, Exception):
                    raise
                failures += 1
                log.warning("writing %d finished attempt(s) failed (%s); retrying", len(batch), exc)
                if final and failures > 20:
                    log.error("giving up on %d finished attempt(s)", len(self._finishes))
                    return
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            self.stats.finished += accepted
            self.stats.fenced += len(batch) - accepted
            self._count(batch, fenced=len(batch) - accepted)
            requeued = [(job.queue, f.job_id) for f, job in batch if f.state is State.QUEUED]
            if requeued:
                try:
                    await self._io(self.dispatcher.push, requeued)
                except Exception as exc:
                    log.warning("could not re-dispatch %d job(s): %s", len(requeued), exc)

    def _mark_dirty(self, job_id: str) -> None:
        run = self.runs.get(job_id)
        if run is not None:
            self._dirty[job_id] = run

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

    async def _metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(METRICS_FLUSH_S)
            await self._flush_metrics()

    async def _flush_metrics(self) -> None:
        if not self._metrics:
            return
        deltas, self._metrics = self._metrics, Counter()
        try:
            await self._io(self.stats_store.add, deltas)
        except BaseException as exc:
            self._metrics.update(deltas)  # counters are added, so retrying later is exact
            if not isinstance(exc, Exception):
                raise
            log.warning("metrics write failed: %s", exc)

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_flush_seconds)
            try:
                await self._flush_progress()
            except Exception as exc:
                log.warning("progress write failed: %s", exc)

    async def _flush_progress(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        updates = []
        for job_id, run in dirty.items():
            p = run.progress
            p.dirty = False
            updates.append(ProgressUpdate(job_id, run.job.attempt, p.progress, p.stage, p.message))
        try:
            await self._io(self.run_store.save_progress, updates, utcnow())
        except BaseException:
            self._dirty = dirty | self._dirty
            raise

    # -- leases, cancels, shutdown ----------------------------------------------------------

    def _owned(self) -> list[tuple[str, int]]:
        return [(job_id, run.job.attempt) for job_id, run in list(self.runs.items())]

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._io(
                    self.run_store.renew_leases,
                    self.worker_id,
                    self._owned(),
                    utcnow(),
                    self.settings.lease_seconds,
                )
                await self._io(self.worker_store.beat, self.worker_id, len(self.runs), utcnow())
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    async def _cancel_loop(self) -> None:
        interval = min(0.5, self.settings.heartbeat_seconds)
        while True:
            await asyncio.sleep(interval)
            owned = self._owned()
            if not owned:
                continue
            try:
                stop = await self._io(self.run_store.cancel_requests, owned)
            except Exception as exc:
                log.warning("cancel check failed: %s", exc)
                continue
            for job_id in stop:
                run = self.runs.get(job_id)
                if run is not None:
                    self._interrupt(run, CANCEL)

    def _interrupt(self, run: Run, reason: str) -> None:
        # A thread cannot be stopped: a sync handler sees ctx.cancelled (its ctx calls raise)
        # while its attempt is recorded now.
        run.ctx._cancel(reason)
        if run.task is not None:
            run.task.cancel()

    async def _drain(self) -> None:
        """Let running jobs finish for the grace period, then hand the rest back."""
        if self.runs and not self._hurry:
            waits = [run.done.wait() for run in list(self.runs.values())]
            try:
                await asyncio.wait_for(asyncio.gather(*waits), self.grace_s)
            except TimeoutError:
                pass
        self._hand_back_all()
        remaining = [run.task for run in list(self.runs.values()) if run.task]
        if remaining:
            await asyncio.gather(*remaining, return_exceptions=True)

    def _hand_back_all(self) -> None:
        for run in list(self.runs.values()):
            self._interrupt(run, SHUTDOWN)
