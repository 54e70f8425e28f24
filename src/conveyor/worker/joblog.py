"""The worker's line per job event: started, completed, retrying, failed, canceled, handed
back at shutdown. Each carries the job's fields (``core.logs.JOB_FIELDS``) and an ``event``.

Levels: ``started`` and a job's normal ends are INFO, so a busy worker writes two lines per
job by default (``CONVEYOR_LOG_LEVEL=WARNING`` for none). Where nothing but Conveyor's own
handler listens, a line skips ``logging``'s records (``core.logs.LineHandler``), and the
fields an attempt's lines repeat are encoded once (``core.logs.JobFields``). Failures and
hand-backs are WARNING, so ``CONVEYOR_LOG_LEVEL=WARNING`` keeps only what needs a look. A line that is off costs one level check: nothing is built
before it. Error text is masked as the API masks it, and no payload or result is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from conveyor.core.logs import JobFields, LineHandler, job_fields, line_handler
from conveyor.core.outcome import ErrorInfo
from conveyor.core.payloads import text_masker
from conveyor.core.registry import Registry
from conveyor.core.states import State
from conveyor.store import ClaimedJob, Finish

log = logging.getLogger("conveyor.worker")
#: Where lines go without a record, when ``configure_logging`` set Conveyor's handler up.
_lines: LineHandler | None = None
#: Each running attempt's repeated fields, from its started line to its end's (by job id).
_attempts: dict[str, JobFields] = {}


def use_line_handler() -> None:
    """Look for the process's ``LineHandler`` (call after logging is configured)."""
    global _lines
    _lines = line_handler()


def _emit(level: int, message: str, fields: dict[str, Any], job: JobFields) -> None:
    lines = _lines
    if lines is not None and lines.takes(log):
        lines.add(level, log.name, message, fields, job)
    else:
        log.log(level, message, extra={**job.fields, **fields})


def _job(job: ClaimedJob, worker_id: str, found: JobFields | None = None) -> JobFields:
    """The attempt's repeated fields: those its started line made, if they match."""
    if found is not None:
        f = found.fields
        if f["attempt"] == job.attempt and f["worker_id"] == worker_id:
            return found
    return JobFields(job_fields(job.id, job.type, job.queue, job.attempt, worker_id))


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
        fixed = _attempts[job.id] = _job(job, worker_id)
        _emit(logging.INFO, f"{fixed.label} started", {"event": "started"}, fixed)


def ended(job: ClaimedJob, finish: Finish, registry: Registry) -> None:
    """The line for an attempt's end as the worker decided it (its write follows)."""
    found = _attempts.pop(job.id, None)
    level, event = ENDINGS[finish.state]
    if not log.isEnabledFor(level):
        return
    fixed = _job(job, finish.worker_id or "", found)
    fields: dict[str, Any] = {"event": event}
    ran_s = (finish.finished_at - job.started_at).total_seconds()
    fields["duration_s"] = round(ran_s, 6)
    if finish.state is State.RETRYING and finish.run_at is not None:
        fields["delay_s"] = round((finish.run_at - finish.finished_at).total_seconds(), 3)
    if finish.error is not None and finish.state is not State.QUEUED:
        _add_error(fields, finish.error, job, registry)
    _emit(level, f"{fixed.label} {_what(event, fields)}", fields, fixed)


def lease_lost(job: ClaimedJob, worker_id: str) -> None:
    fixed = _job(job, worker_id, _attempts.pop(job.id, None))
    if log.isEnabledFor(logging.WARNING):
        log.warning(
            "%s lost its lease: another worker may run it; whoever recovered it records the "
            "attempt",
            fixed.label,
            extra={**fixed.fields, "event": "lease_lost"},
        )


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
