"""The child process of an isolated attempt: `python -m conveyor.worker.child`.

Reads one JSON line (what to run) on stdin and answers with JSON lines on its own channel:
``{"progress": …}`` while it runs, then ``{"result": …}`` or ``{"error": …}``. The handler's
own prints go to stderr so they cannot corrupt the channel.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import traceback
from typing import IO, Any

from conveyor.core.errors import ConveyorError, Permanent
from conveyor.core.logs import configure_logging, resolve_format
from conveyor.core.outcome import cap_traceback
from conveyor.core.settings import load_settings
from conveyor.worker.context import Context, Progress
from conveyor.worker.supervisor import die_with_parent


def _handler(module: str, qualname: str, payload: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The handler and its typed arguments (a JobFunction knows its payload model)."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    job_type = getattr(target, "job_type", None)
    if job_type is None:
        return target, payload
    return job_type.handler, job_type.arguments(payload)


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, allow_nan=False) + "\n")
    channel.flush()


def main() -> None:
    die_with_parent()
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # prints from the handler go to stderr
    _configure_logging()
    spec = json.loads(sys.stdin.readline())
    handler, kwargs = _handler(spec["module"], spec["qualname"], spec["payload"])
    progress = Progress(spec.get("progress"), spec.get("stage"))

    def report(_job_id: str) -> None:
        _send(channel, {"progress": [progress.progress, progress.stage, progress.message]})

    ctx = Context(
        job_id=spec["job_id"],
        job_type=spec["job_type"],
        queue=spec["queue"],
        attempt=spec["attempt"],
        stages=spec["stages"],
        progress=progress,
        on_dirty=report,
        worker_id=spec.get("worker_id", ""),
        payload=spec["payload"],
        secret_fields=spec.get("secret_fields", ()),
    )
    args = (ctx,) if spec["takes_context"] else ()
    try:
        result = handler(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        retryable = not isinstance(exc, Permanent) and _retryable(exc, spec)
        text = cap_traceback("".join(traceback.format_exception(exc)))
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": text}
        _send(channel, {"error": error, "retryable": retryable})
        return
    try:
        _send(channel, {"result": result})
    except (TypeError, ValueError) as exc:
        _send(channel, {"error": {"type": "ResultNotSerializable", "message": str(exc)},
                        "retryable": False})  # fmt: skip


def _configure_logging() -> None:
    """The worker's log format and level, so ``ctx.logger`` lines look the same here."""
    try:
        settings = load_settings()
    except ConveyorError:  # the worker that started this child has read them already
        return
    configure_logging(
        resolve_format(settings.log_format, tty=sys.stderr.isatty()), settings.log_level
    )


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _retryable(exc: BaseException, spec: dict[str, Any]) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(spec.get("dont_retry_on", [])):
        return False
    retry_on = spec.get("retry_on", [])
    return not retry_on or bool(names & set(retry_on))


if __name__ == "__main__":
    main()
