"""The worker: fetch -> claim -> execute -> apply the outcome, many jobs at once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from conveyor.core import tracing
from conveyor.core.errors import UnknownJobType
from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo, decide
from conveyor.core.registry import Registry
from conveyor.core.shares import Shares
from conveyor.core.states import State, check_transition
from conveyor.reconciler import Reconciler
from conveyor.scheduler import Scheduler
from conveyor.services import Services
from conveyor.store import ClaimedJob, Finish
from conveyor.worker import joblog
from conveyor.worker.ahead import Ahead
from conveyor.worker.context import Context, Progress, Run
from conveyor.worker.execute import execute
from conveyor.worker.health import Health
from conveyor.worker.holding import Holding
from conveyor.worker.threads import JobThreads
from conveyor.worker.upkeep import Upkeep
from conveyor.worker.writer import Writer

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")

#: The most jobs one claim takes (a worker with more free slots claims again at once). Larger
#: claims cost fewer round trips per job: a worker with 2,000 slots drained no-op jobs at
#: 23,828 jobs/s with claims of 200 and 29,628 with claims of 1,000 (bench W1, 2 processes).
MAX_CLAIM_BATCH = 1000


def _end_span(span: tracing.Attempt | None, attempt: Attempt, state: State | None) -> None:
    """End an attempt's span (``core.tracing``) with its outcome and the job's new state."""
    if span is not None:
        error_type = attempt.error.type if attempt.error is not None else None
        tracing.attempt_ended(span, attempt.outcome.value, error_type, state and state.value)


class Worker(Holding, Upkeep):
    """One worker process's loop. Built by ``worker.process.build_worker``, which makes its
    parts: ``services`` (stores, clock, delivery), its ``reconciler``, and a ``scheduler``
    when the process also fires periodic jobs."""

    def __init__(
        self,
        registry: Registry,
        services: Services,
        reconciler: Reconciler,
        *,
        worker_id: str,
        queues: dict[str, int],
        concurrency: int | None = None,
        strict: bool = False,
        grace_s: float | None = None,
        scheduler: Scheduler | None = None,
        on_wedged: Callable[[str], None] | None = None,
    ) -> None:
        """``on_wedged`` replaces the process when its event loop stays blocked (see
        ``worker.health``); without it a wedged worker only logs."""
        self.registry = registry
        self.services = services
        self.settings = settings = services.settings
        self.clock = services.clock  # measured before start and every heartbeat
        self.reconciler = reconciler
        self.scheduler = scheduler
        self.worker_id = worker_id
        self.queues = queues
        self.concurrency = concurrency or settings.concurrency
        self.shares = Shares(self.queues, strict=strict)
        self.grace_s = settings.grace_seconds if grace_s is None else grace_s
        self.source = services.source(worker_id, queues, settings.lease_seconds)
        self.io = ThreadPoolExecutor(4, thread_name_prefix="conveyor-io")
        self.fetch_io = ThreadPoolExecutor(1, thread_name_prefix="conveyor-fetch")
        self.threads = JobThreads(self.concurrency + 4)
        self.writer = Writer(
            services.runs, services.stats, services.handoff, services.events, self._io,
            now=self.clock.now,
        )  # fmt: skip
        self.stats = self.writer.stats
        self.runs: dict[str, Run] = {}
        self.ahead = Ahead(self.concurrency, settings.prefetch)
        self._ahead_timer: asyncio.TimerHandle | None = None
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._hurry = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.health = Health(
            self.concurrency,
            wedged_after_s=2 * settings.lease_seconds,
            running=self._describe_running,
            on_wedged=on_wedged,
        )

    @property
    def replace_reason(self) -> str | None:
        """Why this worker stopped to be replaced by a fresh process (None: it was asked to)."""
        return self.health.replace_reason

    # -- lifecycle --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: stop claiming and drain within the grace period. Second: hand the
        running jobs back at once (queued again, no attempt charged), then stop."""
        if self._stopping.is_set():
            if not self._hurry and self.runs:
                log.warning("stopping now: handing back %d running job(s)", len(self.runs))
            self._hurry = True
            self._hand_back_all()
        else:
            self._say_stopping()
        self._stopping.set()
        self._slot_free.set()

    def _say_stopping(self) -> None:
        """What a stop waits for, and how to stop waiting: said at the first signal."""
        if self.health.replace_reason is not None:
            return  # said already, by whoever decided to replace this worker
        running = len(self.runs)
        if not running:
            log.info("stopping: no running jobs")
            return
        log.info(
            "stopping: waiting up to %g s for %d running job(s); Ctrl-C again (or a second "
            "SIGTERM) to hand them back now",
            self.grace_s,
            running,
        )

    async def run(self) -> None:
        joblog.use_line_handler()
        try:
            await self._io(self.clock.sync)
            await self._io(
                self.services.workers.register,
                self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=self.queues,
                concurrency=self.concurrency,
                now=self.clock.now(),
            )
            log.info("worker %s serving %s", self.worker_id, self.queues)
            loops = [
                self.writer.finish_loop(),
                self.writer.progress_loop(self.settings.progress_flush_seconds),
                self.writer.metrics_loop(),
                self._heartbeat_loop(),
                self._health_loop(),
                self._cancel_loop(),
                self.reconciler.loop(self._stopping),
            ]
            if self.scheduler is not None:
                loops.append(self.scheduler.loop(self._stopping))
            background = [asyncio.create_task(c) for c in loops]
            self.health.start_watch()
            await self._fetch_loop()
            await self._release_ahead()
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.writer.flush_all()
            await self._io(
                self.services.workers.stop, self.worker_id, self.clock.now(), self.health.problem()
            )
        finally:
            self.health.stop_watch()
            self._teardown()
            self._stopped.set()

    def _teardown(self) -> None:
        self.threads.shutdown()
        self.io.shutdown(wait=True)
        self.fetch_io.shutdown(wait=True)
        self.services.close()

    async def _io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.io, lambda: fn(*args, **kwargs))

    # -- fetch and run ----------------------------------------------------------------------

    def _free(self) -> int:
        """Free slots: a slot whose thread still runs an ended attempt's handler is not."""
        return self.concurrency - len(self.runs) - self.health.stuck()

    async def _fetch_loop(self) -> None:
        """Claim for the free slots and for the jobs held ahead of them (``worker.ahead``):
        claimed jobs start while slots are free; the rest are held and start as slots free."""
        loop = asyncio.get_running_loop()
        block_s = self.source.idle_s
        failures = 0
        while not self._stopping.is_set():
            free = self._free()
            want = min(self.ahead.want(free), MAX_CLAIM_BATCH)
            self._slot_free.clear()
            if want <= 0:
                await self._slot_free.wait()
                continue
            try:
                claimed = await loop.run_in_executor(
                    self.fetch_io,
                    self.source.claim,
                    self.shares,
                    want,
                    block_s if free > 0 else 0,  # only a free slot waits for new work
                )
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("claim failed (%s); retrying", exc)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            for job in claimed:
                if self._free() <= 0 or self._stopping.is_set():
                    self.ahead.hold(job)  # a stop asked during the claim: handed back unstarted
                    continue
                if free <= 0:  # a slot freed during the claim: it starts now, not at the claim
                    job.started_at = self.clock.now()
                free -= 1
                self._start(job)
            if claimed:
                self._background(self.writer.announce([job.id for job in claimed]))
                self._watch_ahead()
                # Let the jobs just started take their first step before the next claim: its
                # Python work in the fetch thread would hold the GIL while they wait.
                await asyncio.sleep(0)
            elif free <= 0:
                await self._slot_free.wait()  # nothing to claim ahead: wait for a slot
        try:
            await loop.run_in_executor(self.fetch_io, self.source.release)
        except Exception as exc:
            log.warning("could not hand back fetched ids (%s); the reconciler will", exc)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    def _start(self, job: ClaimedJob) -> None:
        self.writer.claimed(job)
        joblog.started(job, self.worker_id)
        run = self._run(job)
        self.runs[job.id] = run
        run.task = asyncio.create_task(self._execute(run))  # unnamed: naming costs per job

    def _run(self, job: ClaimedJob) -> Run:
        progress = Progress(job.progress, job.stage)
        stages: tuple[str, ...] = ()
        secrets: frozenset[str] = frozenset()
        if job.type in self.registry:
            job_type = self.registry.get(job.type)
            stages, secrets = job_type.stages, job_type.secret_fields
        ctx = Context(
            job_id=job.id,
            job_type=job.type,
            queue=job.queue,
            attempt=job.attempt,
            stages=stages,
            progress=progress,
            on_dirty=self._progressed,
            worker_id=self.worker_id,
            payload=job.payload,
            secret_fields=secrets,
        )
        return Run(job, ctx, progress)

    async def _execute(self, run: Run) -> None:
        job = run.job
        began = time.monotonic()
        span = tracing.attempt_started(job, self.worker_id)  # None unless tracing is set up
        try:
            attempt = await self._attempt(run)
        except asyncio.CancelledError:
            attempt = Attempt(AttemptOutcome.SHUTDOWN, error=ErrorInfo("Shutdown", "worker exit"))
        except Exception as exc:  # a bug of ours, not the handler's: record it, keep going
            log.exception("job %s: attempt failed inside the worker", job.id)
            attempt = Attempt(AttemptOutcome.ERROR, error=ErrorInfo.from_exception(exc))
        state = self._record(run, attempt)
        _end_span(span, attempt, state)
        self.health.ended(run.ctx)
        self.runs.pop(job.id, None)
        self.ahead.ended(time.monotonic() - began)
        self._start_held()
        if self.ahead.want(self._free()) > 0:
            self._slot_free.set()

    async def _attempt(self, run: Run) -> Attempt:
        job = run.job
        try:
            job_type = self.registry.get(job.type)
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

    def _record(self, run: Run, attempt: Attempt) -> State | None:
        """Hand the attempt's finish to the writer; the state it moves the job to."""
        job = run.job
        if attempt.outcome is AttemptOutcome.WORKER_LOST:
            joblog.lease_lost(job, self.worker_id)
            return None  # the job is no longer ours: whoever recovered it records the attempt
        policy = self.registry.policy(job.type, job.max_attempts)
        now = self.clock.now()
        decision = decide(attempt, policy=policy, attempt_number=job.charged, now=now)
        check_transition(job.id, State.RUNNING, decision.state)  # the one table decides
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
        self.writer.finished(finish, job)
        joblog.ended(job, finish, self.registry)
        return decision.state

    def _progressed(self, job_id: str) -> None:
        run = self.runs.get(job_id)
        if run is not None:
            self.writer.progressed(run.job, run.progress)
