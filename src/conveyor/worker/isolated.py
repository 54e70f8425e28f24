"""Isolated attempts: the handler runs in a child process that a timeout or cancel kills,
and whose crash (segfault, os._exit, OOM kill) fails only that attempt, as ``crashed``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from conveyor.core.errors import Permanent
from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo, checked_result
from conveyor.core.registry import JobType
from conveyor.worker.context import Context
from conveyor.worker.supervisor import die_with_parent

CHANNEL_LIMIT = 64 * 1024 * 1024  # longest line a child may send (a large result)


def _spec(job_type: JobType, payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    handler = job_type.handler
    progress = ctx._progress
    return {
        "module": handler.__module__,
        "qualname": handler.__qualname__,
        "payload": payload,
        "job_id": ctx.job_id,
        "job_type": ctx.job_type,
        "queue": ctx.queue,
        "attempt": ctx.attempt,
        "worker_id": ctx.worker_id,
        "secret_fields": sorted(job_type.secret_fields),
        "stages": list(ctx.stages),
        "progress": progress.progress,
        "stage": progress.stage,
        "takes_context": job_type.takes_context,
        "retry_on": [cls.__name__ for cls in job_type.policy.retry_on],
        "dont_retry_on": [cls.__name__ for cls in job_type.policy.dont_retry_on],
    }


async def run_isolated(
    job_type: JobType,
    payload: dict[str, Any],
    ctx: Context,
    *,
    timeout_s: float | None,
    max_result_bytes: int,
) -> Attempt:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "conveyor.worker.child",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent, limit=CHANNEL_LIMIT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(_spec(job_type, payload, ctx)) + "\n").encode())
    await proc.stdin.drain()
    proc.stdin.close()
    answer: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            async for line in proc.stdout:
                message = json.loads(line)
                if "progress" in message:
                    _progressed(ctx, message["progress"])
                else:
                    answer = message
            await proc.wait()
    except TimeoutError:
        await _kill(proc)
        if not deadline.expired():
            raise
        return Attempt(
            AttemptOutcome.TIMEOUT,
            error=ErrorInfo(
                "Timeout",
                f"the attempt exceeded its timeout of {timeout_s:g} s; its process was killed",
            ),  # fmt: skip
        )
    except BaseException:  # canceled, shutting down: the child goes too
        await _kill(proc)
        raise
    return _attempt(answer, proc.returncode, max_result_bytes)


def _progressed(ctx: Context, values: list[Any]) -> None:
    progress = ctx._progress
    progress.progress, progress.stage, progress.message = values
    ctx._mark()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await proc.wait()


def _attempt(answer: dict[str, Any] | None, code: int | None, limit: int) -> Attempt:
    if answer is None:
        return Attempt(
            AttemptOutcome.CRASHED,
            error=ErrorInfo("Crashed", f"the attempt's process died: {_describe(code)}"),
        )
    if "error" in answer:
        error = ErrorInfo(**answer["error"])
        # Not retryable (Permanent, dont_retry_on…): decide() fails the job at once.
        exception = None if answer.get("retryable") else Permanent(error.message)
        return Attempt(AttemptOutcome.ERROR, error=error, exception=exception)
    return checked_result(answer.get("result"), limit)


def _describe(code: int | None) -> str:
    if code is None:
        return "unknown exit status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
