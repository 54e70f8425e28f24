"""Request and response bodies, named by role."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from conveyor.core.states import State
from conveyor.core.views import AttemptView, BulkAction, JobView


class JobCreate(BaseModel):
    """A job to enqueue."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="A registered job type.")
    payload: dict[str, Any] = Field(default_factory=dict, description="The handler's arguments.")
    queue: str | None = Field(None, min_length=1, max_length=200)
    delay: float | str | None = Field(
        None, description="Run later: seconds, or a duration such as '10m'."
    )
    run_at: datetime | None = Field(None, description="Run at this time (with a time zone).")
    max_attempts: int | None = Field(None, ge=1, le=1000, strict=True)
    timeout: float | str | None = Field(
        None,
        description="Seconds, or a duration like '15m': more than 0, at most 7 days. "
        "Null: the job type's timeout.",
    )
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    webhook: str | None = Field(
        None,
        max_length=2048,
        description="An http(s) URL POSTed the job, signed, when it completes, fails or is "
        "canceled (instead of its type's or the global one).",
    )


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobCreate] = Field(min_length=1, max_length=1000)


class Links(BaseModel):
    self: str
    events: str
    cancel: str


class JobAccepted(BaseModel):
    id: str
    state: State
    created: bool = Field(description="False when an idempotency key matched an existing job.")
    links: Links


class BatchAccepted(BaseModel):
    jobs: list[JobAccepted]


class ErrorInfoPublic(BaseModel):
    type: str | None = None
    message: str | None = None
    traceback: str | None = None


class AttemptPublic(BaseModel):
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str
    error: ErrorInfoPublic | None

    @classmethod
    def of(cls, a: AttemptView) -> AttemptPublic:
        error = None
        if a.error_type or a.error_message:
            error = ErrorInfoPublic(
                type=a.error_type, message=a.error_message, traceback=a.traceback
            )
        return cls(
            attempt=a.attempt,
            worker_id=a.worker_id,
            started_at=a.started_at,
            finished_at=a.finished_at,
            outcome=a.outcome,
            error=error,
        )


class JobPublic(BaseModel):
    id: str
    type: str
    queue: str
    state: State
    stage: str | None
    progress: float | None
    message: str | None
    payload: dict[str, Any]
    result: Any = None
    error: ErrorInfoPublic | None
    attempt: int
    max_attempts: int
    cancel_requested: bool
    idempotency_key: str | None
    timeout_s: float | None
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    attempts: list[AttemptPublic] | None = None
    links: Links

    @classmethod
    def of(cls, v: JobView, links: Links, payload: dict[str, Any], result: Any,
           with_attempts: bool) -> JobPublic:  # fmt: skip
        return cls(
            id=v.id,
            type=v.type,
            queue=v.queue,
            state=v.state,
            stage=v.stage,
            progress=v.progress,
            message=v.message,
            payload=payload,
            result=result,
            error=ErrorInfoPublic(**v.error) if v.error else None,
            attempt=v.attempt,
            max_attempts=v.max_attempts,
            cancel_requested=v.cancel_requested,
            idempotency_key=v.idempotency_key,
            timeout_s=v.timeout_s,
            created_at=v.created_at,
            scheduled_at=v.scheduled_at,
            started_at=v.started_at,
            finished_at=v.finished_at,
            attempts=[AttemptPublic.of(a) for a in v.attempts] if with_attempts else None,
            links=links,
        )


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None


TIME_DOC = "An RFC 3339 time with a zone, e.g. 2026-11-26T08:00:00Z."
DATE_TIME: dict[str, Any] = {"format": "date-time"}


class JobFilterBody(BaseModel):
    """Which jobs a bulk action covers: the filters of GET /jobs, every one given must match."""

    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    type: str | None = Field(default=None, min_length=1, max_length=200)
    queue: str | None = Field(default=None, min_length=1, max_length=200)
    created_after: str | None = Field(
        default=None, max_length=64, json_schema_extra=DATE_TIME, description=TIME_DOC
    )
    created_before: str | None = Field(
        default=None, max_length=64, json_schema_extra=DATE_TIME, description=TIME_DOC
    )


class BulkCreate(BaseModel):
    """A retry, cancel or delete of every job a filter matches."""

    model_config = ConfigDict(extra="forbid")

    action: BulkAction
    filter: JobFilterBody = Field(default_factory=lambda: JobFilterBody())
    all: bool = Field(
        False,
        strict=True,
        description="Required (true) to cancel or delete with an empty filter: every job.",
    )
    cursor: str | None = Field(
        None, max_length=64, description="A previous response's cursor: go on from there."
    )


class BulkPublic(BaseModel):
    action: BulkAction
    changed: int = Field(description="Jobs this request changed.")
    more: bool = Field(description="The request stopped at its bound: send it again with cursor.")
    cursor: str | None = Field(description="Where to go on from when more is true.")


class JobTypePublic(BaseModel):
    name: str
    queue: str
    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    timeout_s: float | None
    stages: list[str]
    payload_schema: dict[str, Any]


class QueuePublic(BaseModel):
    name: str
    counts: dict[str, int]
    estimated: list[str] = Field(
        default_factory=list,
        description="States whose count is above 10,000 and estimated from table statistics.",
    )
    oldest_queued_age_seconds: float | None
    completed_last_minute: int
    failed_last_minute: int
    mean_wait_seconds: float | None
    mean_run_seconds: float | None
    served: bool = Field(
        description="Whether a live worker serves this queue: false means its jobs wait "
        "until one does (start a worker with --queues NAME)."
    )


class WorkerPublic(BaseModel):
    id: str
    host: str
    pid: int
    queues: dict[str, int]
    concurrency: int
    in_flight: int
    started_at: datetime
    heartbeat_at: datetime
    problem: str | None = Field(
        None,
        description="Why the worker cannot make full progress (stuck threads, a blocked "
        "event loop); null while it is healthy.",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def healthy(self) -> bool:
        return self.problem is None


class Check(BaseModel):
    ok: bool
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    database: Check
    migrations: Check  # the schema is at the revision this Conveyor needs
    redis: Check | None


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- the history of the last minutes (GET /stats/history) ------------------------------------


class MinutePublic(BaseModel):
    """One minute: attempts that ended in it, their means and wait percentiles (null without
    any), and the depth sampled in it (null when no sample was taken that minute)."""

    at: datetime = Field(description="The minute's start (UTC).")
    completed: int
    failed: int
    retried: int
    canceled: int
    mean_wait_seconds: float | None
    mean_run_seconds: float | None
    wait_p50_seconds: float | None = Field(description="Interpolated in histogram buckets.")
    wait_p95_seconds: float | None
    wait_p99_seconds: float | None
    queued: int | None = Field(description="Exact up to 10,000, estimated above.")
    running: int | None


class RecentPublic(BaseModel):
    """The last 5 minutes (the current one for what has elapsed of it)."""

    completed_per_minute: float
    failed_per_minute: float
    mean_wait_seconds: float | None
    mean_run_seconds: float | None


class SeriesPublic(BaseModel):
    minutes: list[MinutePublic] = Field(description="Oldest first, one per minute.")
    recent: RecentPublic


class HistoryPublic(BaseModel):
    since: datetime = Field(description="The first minute's start (UTC).")
    minutes: int
    total: SeriesPublic = Field(description="Every queue (or the one asked for) together.")
    queues: dict[str, SeriesPublic] = Field(
        description="Per queue: the busiest 50 of the window, or the one asked for."
    )
    truncated: bool = Field(description="True when more queues had figures than listed.")
