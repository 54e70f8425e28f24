"""Run one attempt of a job and say how it ended. No database, no Redis: just the handler."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from typing import Any

from conveyor.core.errors import InvalidPayload, JobCanceled, Permanent
from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo, checked_result
from conveyor.core.registry import JobType
from conveyor.worker.context import Context
from conveyor.worker.isolated import run_isolated
from conveyor.worker.threads import JobThreads

log = logging.getLogger("conveyor.worker")

#: How far past its deadline an async handler may return and still count as on time: a busy
#: event loop runs the timeout's callback a little late, a blocked one seconds late.
LATE_TOLERANCE_S = 0.25

#: Why a running attempt was stopped from outside, as set on its Context.
CANCEL, SHUTDOWN, LOST, TIMEOUT = "cancel", "shutdown", "lost", "timeout"


async def execute(
    job_type: JobType,
    payload: dict[str, Any],
    ctx: Context,
    *,
    timeout_s: float | None,
    threads: JobThreads,
    max_result_bytes: int,
) -> Attempt:
    try:
        kwargs = job_type.arguments(payload)
    except InvalidPayload as exc:  # the job type's signature changed since the enqueue
        return _error(Permanent(str(exc)))
    args = (ctx,) if job_type.takes_context else ()
    if job_type.isolated:
        try:
            return await run_isolated(
                job_type, payload, ctx, timeout_s=timeout_s, max_result_bytes=max_result_bytes
            )
        except asyncio.CancelledError:
            stopped = _stopped(ctx)
            if stopped is None:
                raise
            return stopped
    deadline: asyncio.Timeout | None = None
    try:
        if timeout_s is None:  # no deadline to keep: skip the timeout machinery
            result = await _call(job_type, args, kwargs, threads, ctx)
        else:
            async with asyncio.timeout(timeout_s) as deadline:
                result = await _call(job_type, args, kwargs, threads, ctx)
            if job_type.is_async and _late(deadline):
                # An async handler that blocked the event loop past its deadline returned
                # before the timeout could fire: it exceeded its timeout all the same.
                return _timed_out(ctx, timeout_s, blocked=True)
    except TimeoutError as exc:
        if timeout_s is None or deadline is None or not deadline.expired():
            return _error(exc)
        return _timed_out(ctx, timeout_s, blocked=False)
    except (asyncio.CancelledError, JobCanceled):
        stopped = _stopped(ctx)
        if stopped is None:
            raise
        return stopped
    except Exception as exc:
        return _error(exc)
    return checked_result(result, max_result_bytes)


async def _call(
    job_type: JobType,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    threads: JobThreads,
    ctx: Context,
) -> Any:
    if job_type.is_async:
        return await job_type.handler(*args, **kwargs)
    call = functools.partial(job_type.handler, *args, **kwargs)
    context = contextvars.copy_context()
    return await threads.submit(functools.partial(_in_thread, context, call, ctx))


def _in_thread(context: contextvars.Context, call: Any, ctx: Context) -> Any:
    """Run a sync handler, marking its ctx while the thread is busy with it: a thread that
    outlives its attempt (timed out, canceled) still holds one of the worker's threads."""
    ctx.in_thread = True
    try:
        return context.run(call)
    finally:
        ctx.in_thread = False


def _late(deadline: asyncio.Timeout) -> bool:
    """Past the deadline by more than a busy loop's lag: the handler held the loop itself."""
    when = deadline.when()
    return when is not None and asyncio.get_running_loop().time() > when + LATE_TOLERANCE_S


def _timed_out(ctx: Context, timeout_s: float, *, blocked: bool) -> Attempt:
    ctx._cancel(TIMEOUT)  # a sync handler's thread sees ctx.cancelled from now on
    message = f"the attempt exceeded its timeout of {timeout_s:g} s"
    if blocked:
        message += " (an async handler blocked the event loop: the worker could not stop it)"
        log.warning("job %s (%s) blocked the event loop past its timeout", ctx.job_id, ctx.job_type)
    return Attempt(AttemptOutcome.TIMEOUT, error=ErrorInfo("Timeout", message))


def _stopped(ctx: Context) -> Attempt | None:
    reason = ctx.cancel_reason
    if reason == CANCEL:
        return Attempt(
            AttemptOutcome.CANCELED, error=ErrorInfo("Canceled", "canceled while running")
        )
    if reason == SHUTDOWN:
        return Attempt(
            AttemptOutcome.SHUTDOWN,
            error=ErrorInfo("Shutdown", "the worker shut down; the job was handed back"),
        )
    if reason == LOST:
        return Attempt(
            AttemptOutcome.WORKER_LOST,
            error=ErrorInfo("LeaseLost", "this worker lost the job's lease"),
        )
    return None


def _error(exc: BaseException) -> Attempt:
    return Attempt(AttemptOutcome.ERROR, error=ErrorInfo.from_exception(exc), exception=exc)
