"""Run one attempt of a job and say how it ended. No database, no Redis: just the handler."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import Executor
from typing import Any

from conveyor.core.errors import InvalidPayload, JobCanceled, Permanent
from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo
from conveyor.core.registry import JobType
from conveyor.core.sizes import json_size
from conveyor.worker.context import Context
from conveyor.worker.isolated import run_isolated

#: Why a running attempt was stopped from outside, as set on its Context.
CANCEL, SHUTDOWN, LOST, TIMEOUT = "cancel", "shutdown", "lost", "timeout"


async def execute(
    job_type: JobType,
    payload: dict[str, Any],
    ctx: Context,
    *,
    timeout_s: float | None,
    threads: Executor,
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
            result = await _call(job_type, args, kwargs, threads)
        else:
            async with asyncio.timeout(timeout_s) as deadline:
                result = await _call(job_type, args, kwargs, threads)
    except TimeoutError as exc:
        if deadline is None or not deadline.expired():
            return _error(exc)
        ctx._cancel(TIMEOUT)  # a sync handler's thread sees ctx.cancelled from now on
        return Attempt(
            AttemptOutcome.TIMEOUT,
            error=ErrorInfo("Timeout", f"the attempt exceeded its timeout of {timeout_s:g} s"),
        )
    except (asyncio.CancelledError, JobCanceled):
        stopped = _stopped(ctx)
        if stopped is None:
            raise
        return stopped
    except Exception as exc:
        return _error(exc)
    return _checked_result(result, max_result_bytes)


async def _call(
    job_type: JobType, args: tuple[Any, ...], kwargs: dict[str, Any], threads: Executor
) -> Any:
    if job_type.is_async:
        return await job_type.handler(*args, **kwargs)
    call = functools.partial(job_type.handler, *args, **kwargs)
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(threads, context.run, call)


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


def _checked_result(result: Any, limit: int) -> Attempt:
    if result is None:
        return Attempt(AttemptOutcome.COMPLETED, result=None)
    try:
        size = json_size(result)
    except (TypeError, ValueError) as exc:
        return _error(Permanent(f"the result is not JSON-serialisable: {exc}"))
    if size > limit:
        return _error(Permanent(f"the result is {size} bytes, over the limit of {limit} bytes"))
    return Attempt(AttemptOutcome.COMPLETED, result=result)
