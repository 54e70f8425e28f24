"""Every table and index, defined once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from conveyor.core.states import State


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


JsonDoc = JSON().with_variant(JSONB(), "postgresql")
JobId = Uuid(as_uuid=False)

metadata = MetaData()

# The partial indexes' conditions (as the migrations spell them).
_QUEUED = f"state = '{State.QUEUED.value}'"
_WAITING = f"state IN ('{State.SCHEDULED.value}', '{State.RETRYING.value}')"
_ENDED = f"state IN ('{State.COMPLETED.value}', '{State.FAILED.value}', '{State.CANCELED.value}')"
#: An ended job whose webhook has no delivery job for this end yet (``core.webhooks``: meta
#: ``webhook`` holds its URLs, ``webhook_sent`` the end last handed to a delivery job).
#: Jobs without a webhook never enter the index.
WEBHOOK_DUE = {
    "postgresql": f"meta ? 'webhook' AND {_ENDED} AND (meta ->> 'webhook_sent') IS DISTINCT FROM "
    "(state || ':' || CAST(attempt AS text))",
    "sqlite": f"json_extract(meta, '$.webhook') IS NOT NULL AND {_ENDED} AND "
    "json_extract(meta, '$.webhook_sent') IS NOT (state || ':' || attempt)",
}

jobs = Table(
    "conveyor_jobs",
    metadata,
    Column("id", JobId, primary_key=True),
    Column("type", String(200), nullable=False),
    Column("queue", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("payload", JsonDoc, nullable=False),
    Column("result", JsonDoc, nullable=True),
    Column("error", JsonDoc, nullable=True),
    Column("stage", String(200), nullable=True),
    Column("progress", Float, nullable=True),
    Column("message", Text, nullable=True),
    # Conveyor's own facts about a job, never the user's payload: e.g. the trace context of
    # the request that enqueued it, a webhook to call when it ends. NULL for most jobs.
    Column("meta", JsonDoc, nullable=True),
    # Attempts started so far; with the id it fences every write of an attempt.
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    # Attempts that do not count against max_attempts (shutdown hand-backs, manual retries).
    Column("uncharged", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False),
    Column("timeout_s", Float, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("payload_hash", String(64), nullable=True),
    Column("worker_id", String(200), nullable=True),
    # Not indexed: renewals stay heap-only updates; expired leases are found among the
    # (few) running jobs through conveyor_jobs_state.
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("scheduled_at", UTCDateTime, nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(
        "conveyor_jobs_claim",
        "queue",
        "id",
        postgresql_where=text(_QUEUED),
        sqlite_where=text(_QUEUED),
    ),
    Index(
        "conveyor_jobs_due",
        "scheduled_at",
        postgresql_where=text(_WAITING),
        sqlite_where=text(_WAITING),
    ),
    Index(
        "conveyor_jobs_idempotency",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
        sqlite_where=text("idempotency_key IS NOT NULL"),
    ),
    Index("conveyor_jobs_state", "state", "id"),
    Index("conveyor_jobs_type", "type", "id"),
    Index("conveyor_jobs_queue", "queue", "id"),
    # Only finished rows: queued and running ones (the hot path's updates) skip this index.
    Index(
        "conveyor_jobs_finished",
        "finished_at",
        postgresql_where=text("finished_at IS NOT NULL"),
        sqlite_where=text("finished_at IS NOT NULL"),
    ),
    Index(
        "conveyor_jobs_webhook_due",
        "id",
        postgresql_where=text(WEBHOOK_DUE["postgresql"]),
        sqlite_where=text(WEBHOOK_DUE["sqlite"]),
    ),
)

attempts = Table(
    "conveyor_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # No foreign key: its check cost a lookup of the job per attempt row on the finish path;
    # attempts are only written for claimed jobs and deleted with them (UpkeepStore.purge).
    Column("job_id", JobId, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", String(200), nullable=True),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("error_type", String(200), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("traceback", Text, nullable=True),
    UniqueConstraint("job_id", "attempt", name="conveyor_attempts_job_attempt"),
)

# Monotonic counters and histogram buckets, added to by workers once per finish batch and
# read by /metrics: the one place every process's job outcomes add up.
counters = Table(
    "conveyor_counters",
    metadata,
    Column("metric", String(100), primary_key=True),
    Column("job_type", String(200), primary_key=True),
    Column("queue", String(200), primary_key=True),
    Column("le", String(20), primary_key=True),  # histogram bucket bound, "" for counters
    Column("value", Float, nullable=False),
)

# The last day, per minute and per queue (job types folded): the outcome counts and wait and
# run histograms workers add with their counters (same transaction), and the depth gauges the
# reconciler sets once a minute. The dashboard's charts read it; rows older than a day go.
minutes = Table(
    "conveyor_minutes",
    metadata,
    Column("minute", UTCDateTime, primary_key=True),  # the minute's start
    Column("metric", String(100), primary_key=True),
    Column("queue", String(200), primary_key=True),
    Column("le", String(20), primary_key=True),  # histogram bucket bound, "" otherwise
    Column("value", Float, nullable=False),
)

workers = Table(
    "conveyor_workers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", JsonDoc, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("in_flight", Integer, nullable=False, server_default=text("0")),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
    Column("problem", Text, nullable=True),  # why it cannot make progress; NULL: healthy
    Index("conveyor_workers_heartbeat", "heartbeat_at"),
)

schedules = Table(
    "conveyor_schedules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("job_type", String(200), nullable=False),
    Column("payload", JsonDoc, nullable=False),
    Column("queue", String(200), nullable=True),
    Column("cron", String(200), nullable=True),
    Column("every_s", Float, nullable=True),
    Column("tz", String(64), nullable=False),
    Column("overlap", String(20), nullable=False),
    Column("catch_up", String(20), nullable=False),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("source", String(10), nullable=False),  # "code" or "api"
    # A code schedule no longer defined in code is disabled, not deleted: history stays.
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("last_tick_at", UTCDateTime, nullable=True),
    Column("next_tick_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("conveyor_schedules_next", "next_tick_at"),
)

# One row per tick of a schedule: the unique key makes each tick fire exactly once, whatever
# the number of schedulers racing for it.
schedule_fires = Table(
    "conveyor_schedule_fires",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "schedule",
        String(200),
        ForeignKey("conveyor_schedules.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tick_at", UTCDateTime, nullable=False),
    Column("outcome", String(20), nullable=False),  # enqueued, missed, skipped, triggered
    Column("job_id", JobId, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("schedule", "tick_at", name="conveyor_schedule_fires_tick"),
)

# Named leases: which process currently performs a duty that wants one performer at a time.
leases = Table(
    "conveyor_leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
