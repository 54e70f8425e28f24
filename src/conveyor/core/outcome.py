"""What happens to a job after an attempt ends: a pure decision the worker only applies."""

from __future__ import annotations

import random
import traceback as tb
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from conveyor.core.errors import Permanent
from conveyor.core.retry import RetryPolicy
from conveyor.core.states import State
from conveyor.core.storable import Unstorable, checked_json, clean_text

TRACEBACK_LIMIT_BYTES = 16 * 1024
#: Characters kept of an error's type name (the column's width) and of its message.
ERROR_TYPE_LIMIT = 200
ERROR_MESSAGE_LIMIT = 8 * 1024
TRACEBACK_PART_LIMIT = 2 * 1024  # characters of each frame or exception line


class AttemptOutcome(StrEnum):
    """How one attempt ended, as recorded in its attempt row."""

    COMPLETED = "completed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    WORKER_LOST = "worker_lost"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An attempt's error as stored: its text is always storable (``clean_text``), since the
    attempt has failed already and its error must be recorded whatever the handler raised."""

    type: str
    message: str
    traceback: str | None = None

    def __post_init__(self) -> None:
        # Made only when an attempt fails: the cleaning is off the common path.
        object.__setattr__(self, "type", clean_text(str(self.type), ERROR_TYPE_LIMIT))
        object.__setattr__(self, "message", clean_text(str(self.message), ERROR_MESSAGE_LIMIT))
        if self.traceback is not None:
            object.__setattr__(self, "traceback", cap_traceback(clean_text(self.traceback)))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        # Each part cut on its own: a huge message must not push the frames out of the cap.
        parts = (clean_text(part, TRACEBACK_PART_LIMIT) for part in tb.format_exception(exc))
        return cls(type(exc).__name__, _message(exc), "".join(parts))

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as broken:  # an exception whose __str__ raises must still be recorded
        return f"(the exception's message could not be read: {type(broken).__name__})"


def cap_traceback(text: str, limit: int = TRACEBACK_LIMIT_BYTES) -> str:
    """Keep the end of a traceback (where the error is) within ``limit`` bytes of UTF-8."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    marker = "...(truncated)...\n"
    keep = limit - len(marker)
    if keep <= 0:
        return data[-limit:].decode("utf-8", "ignore") if limit > 0 else ""
    return marker + data[-keep:].decode("utf-8", "ignore")


@dataclass(slots=True)  # not frozen: made per job, and a frozen init costs 5x
class Attempt:
    """What the worker saw of one attempt."""

    outcome: AttemptOutcome
    result: Any = None
    error: ErrorInfo | None = None
    exception: BaseException | None = None


@dataclass(slots=True)  # not frozen: made per job, and a frozen init costs 5x
class Decision:
    """The job's next state after an attempt, and when it runs again if it does."""

    state: State
    run_at: datetime | None = None
    result: Any = None
    error: ErrorInfo | None = None
    charges_attempt: bool = True


def decide(
    attempt: Attempt,
    *,
    policy: RetryPolicy,
    attempt_number: int,
    now: datetime,
    rng: random.Random | None = None,
) -> Decision:
    """Turn an ended attempt into the job's next state.

    ``attempt_number`` is the 1-based count of attempts charged so far, this one included.
    """
    outcome = attempt.outcome
    if outcome is AttemptOutcome.COMPLETED:
        return Decision(State.COMPLETED, result=attempt.result)
    if outcome is AttemptOutcome.CANCELED:
        return Decision(State.CANCELED, error=attempt.error)
    if outcome is AttemptOutcome.SHUTDOWN:
        return Decision(State.QUEUED, error=attempt.error, charges_attempt=False)
    if not _retryable(attempt, policy) or attempt_number >= policy.max_attempts:
        return Decision(State.FAILED, error=attempt.error)
    delay_s = policy.backoff_s(attempt_number, rng)
    return Decision(State.RETRYING, run_at=now + timedelta(seconds=delay_s), error=attempt.error)


def decide_lost(
    worker_id: str | None,
    *,
    policy: RetryPolicy,
    attempt_number: int,
    now: datetime,
    cancel_requested: bool,
    rng: random.Random | None = None,
) -> Decision:
    """The next state of a run whose worker stopped renewing its lease (it died, hung or lost
    the database): retried or failed by policy, as an attempt that raised nothing is; but
    canceled when it was being canceled, since no worker is left to finish the cancel.

    ``attempt_number`` is the 1-based count of attempts charged so far, the lost one included.
    """
    if cancel_requested:
        return Decision(State.CANCELED, error=ErrorInfo("Canceled", "canceled"))
    lost = Attempt(
        AttemptOutcome.WORKER_LOST,
        error=ErrorInfo("WorkerLost", f"worker {worker_id} stopped renewing its lease"),
    )
    return decide(lost, policy=policy, attempt_number=attempt_number, now=now, rng=rng)


def _retryable(attempt: Attempt, policy: RetryPolicy) -> bool:
    exc = attempt.exception
    if exc is None:
        return True  # timeouts, lost workers and crashes are retried by policy
    if isinstance(exc, Permanent):
        return False
    return policy.retries(exc)


def checked_result(result: Any, limit: int) -> Attempt:
    """A completed attempt, or one failed for good when its result cannot be stored (the one
    storability check, then the size limit)."""
    if result is None:
        return Attempt(AttemptOutcome.COMPLETED, result=None)
    try:
        size = checked_json(result, "the result")[1]
    except Unstorable as exc:
        return _refused("UnstorableResult", exc.message)
    if size > limit:
        return _refused(
            "PayloadTooLarge", f"the result is {size} bytes, over the limit of {limit} bytes"
        )
    return Attempt(AttemptOutcome.COMPLETED, result=result)


def _refused(kind: str, message: str) -> Attempt:
    """Failed for good, without a traceback: the handler returned; nothing raised."""
    return Attempt(
        AttemptOutcome.ERROR, error=ErrorInfo(kind, message), exception=Permanent(message)
    )
