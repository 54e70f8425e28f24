"""Plain records passed between the store and the runtimes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.core.outcome import AttemptOutcome, ErrorInfo
from conveyor.core.states import State


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    type: str
    queue: str
    payload: dict[str, Any]
    state: State
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    payload_hash: str | None = None
    meta: dict[str, Any] | None = None  # Conveyor's own per-job facts (tables.jobs "meta")


@dataclass(frozen=True, slots=True)
class Inserted:
    """The job an enqueue resolved to; ``created`` is False for an idempotent repeat."""

    id: str
    queue: str
    state: State
    created: bool


@dataclass(slots=True)  # not frozen: made per job, and a frozen init costs 5x
class ClaimedJob:
    id: str
    type: str
    queue: str
    payload: dict[str, Any]
    attempt: int
    charged: int  # attempts counted against max_attempts, this one included
    max_attempts: int
    timeout_s: float | None
    started_at: datetime
    progress: float | None = None
    stage: str | None = None
    wait_s: float | None = None  # seconds from when it became due (run_at, else creation) to now
    meta: dict[str, Any] | None = None  # tables.jobs "meta": e.g. the enqueue's trace context


@dataclass(slots=True)  # not frozen: made per job, and a frozen init costs 5x
class Finish:
    """The end of one attempt, written fenced by (job id, attempt)."""

    job_id: str
    attempt: int
    state: State
    outcome: AttemptOutcome
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime
    result: Any = None
    error: ErrorInfo | None = None
    run_at: datetime | None = None
    charges_attempt: bool = True
    expired_before: datetime | None = None  # recovery: only if the lease is still expired
    # The attempt's last progress report, written with the finish (None keeps what is stored).
    progress: float | None = None
    stage: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    job_id: str
    attempt: int
    progress: float | None
    stage: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class ExpiredRun:
    id: str
    type: str
    queue: str
    attempt: int
    charged: int
    max_attempts: int
    worker_id: str | None
    started_at: datetime | None
    cancel_requested: bool = False
