"""The worker's line per job event: started, completed, retrying, failed, canceled, handed
back at shutdown. Each carries the job's fields (``core.logs.JOB_FIELDS``) and an ``event``.

Levels: ``started`` and a job's normal ends are INFO, so a busy worker writes two lines per
job by default (``CONVEYOR_LOG_LEVEL=WARNING`` for none). Where nothing but Conveyor's own
handler listens, a line skips ``logging``'s records (``core.logs.LineHandler``): ~3 us
instead of ~12 of the worker's event loop; failures and hand-backs are WARNING, so ``CONVEYOR_LOG_LEVEL=WARNING``
keeps only what needs a look. A line that is off costs one level check: nothing is built
before it. Error text is masked as the API masks it, and no payload or result is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from conveyor.core.logs import LineHandler, job_fields, job_label, line_handler
from conveyor.core.outcome import ErrorInfo
from conveyor.core.payloads import text_masker
from conveyor.core.registry import Registry
from conveyor.core.states import State
from conveyor.store import ClaimedJob, Finish

log = logging.getLogger("conveyor.worker")
#: Where lines go without a record, when ``configure_logging`` set Conveyor's handler up.
_lines: LineHandler | None = None


def use_line_handler() -> None:
    """Look for the process's ``LineHandler`` (call after logging is configured)."""
    global _lines
    _lines = line_handler()


def _emit(level: int, message: str, fields: dict[str, Any]) -> None:
    lines = _lines
    if lines is not None and lines.takes(log):
        lines.add(level, log.name, message, fields)
    else:
        log.log(level, message, extra=fields)


#: The level and event name of the line for each state an attempt can leave its job in.
ENDINGS: dict[State, tuple[int, str]] = {
    State.COMPLETED: (logging.INFO, "completed"),
    State.RETRYING: (logging.INFO, "retrying"),
    State.FAILED: (logging.WARNING, "failed"),
    State.CANCELED: (logging.INFO, "canceled"),
    State.QUEUED: (logging.WARNING, "handed_back"),  # shutdown: no attempt charged
}


def started(job: ClaimedJob, worker_id: str) -> None:
    if log.isEnabledFor(logging.INFO):
        fields = _fields(job, worker_id, "started")
        _emit(logging.INFO, f"{job_label(fields)} started", fields)


def ended(job: ClaimedJob, finish: Finish, registry: Registry) -> None:
    """The line for an attempt's end as the worker decided it (its write follows)."""
    level, event = ENDINGS[finish.state]
    if not log.isEnabledFor(level):
        return
    fields = _fields(job, finish.worker_id or "", event)
    ran_s = (finish.finished_at - job.started_at).total_seconds()
    fields["duration_s"] = round(ran_s, 6)
    if finish.state is State.RETRYING and finish.run_at is not None:
        fields["delay_s"] = round((finish.run_at - finish.finished_at).total_seconds(), 3)
    if finish.error is not None and finish.state is not State.QUEUED:
        _add_error(fields, finish.error, job, registry)
    _emit(level, f"{job_label(fields)} {_what(event, fields)}", fields)


def lease_lost(job: ClaimedJob, worker_id: str) -> None:
    if log.isEnabledFor(logging.WARNING):
        fields = _fields(job, worker_id, "lease_lost")
        log.warning(
            "%s lost its lease: another worker may run it; whoever recovered it records the "
            "attempt",
            job_label(fields),
            extra=fields,
        )


def _fields(job: ClaimedJob, worker_id: str, event: str) -> dict[str, Any]:
    fields = job_fields(job.id, job.type, job.queue, job.attempt, worker_id)
    fields["event"] = event
    return fields


def _what(event: str, fields: dict[str, Any]) -> str:
    """The line's readable end: what happened, how long it ran, and why."""
    ran_s, error = fields["duration_s"], _error_text(fields)
    if event == "completed":
        return f"completed in {ran_s:.3f} s"
    if event == "retrying":
        return f"retrying in {fields.get('delay_s', 0.0):.2f} s after {error} (ran {ran_s:.3f} s)"
    if event == "failed":
        return f"failed after {ran_s:.3f} s: {error}"
    if event == "handed_back":
        return f"handed back at shutdown after {ran_s:.3f} s: queued again, no attempt charged"
    return f"canceled after {ran_s:.3f} s"


def _add_error(fields: dict[str, Any], error: ErrorInfo, job: ClaimedJob, reg: Registry) -> None:
    """The error's type and message, and its traceback at DEBUG, with the payload's secret
    values masked (``core.payloads``, as ``Registry.shown`` masks them for the API)."""
    hide = text_masker(job.payload, reg.secret_fields(job.type))
    fields["error_type"] = error.type
    fields["error_message"] = hide(error.message) if hide else error.message
    if error.traceback and log.isEnabledFor(logging.DEBUG):
        fields["traceback"] = hide(error.traceback) if hide else error.traceback


def _error_text(fields: dict[str, Any]) -> str:
    kind, message = fields.get("error_type", "an error"), fields.get("error_message")
    return f"{kind}: {message}" if message else str(kind)
