"""Jobs as the outside world changes them: insert (idempotent), read, list, cancel, retry;
in bulk by a filter through ``store.bulk``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.errors import (
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
)
from conveyor.core.ids import is_job_id
from conveyor.core.outcome import AttemptOutcome
from conveyor.core.states import RETRYABLE, State, check_transition
from conveyor.core.views import AttemptView, BulkAction, JobFilter, JobView, Page
from conveyor.store import pg
from conveyor.store.bulk import (
    DEFAULT_BATCH,
    BulkBatch,
    BulkStore,
    cancel_values,
    filter_conditions,
    retry_values,
)
from conveyor.store.errors import translate_errors
from conveyor.store.notify import WAKE_CHANNEL
from conveyor.store.records import Inserted, NewJob
from conveyor.store.tables import attempts, jobs
from conveyor.store.writes import ROW_RECORDED_ATTEMPT, recorded_by_job_row

MAX_PAGE = 1000


class JobStore:
    """``wake`` (PostgreSQL): inserts that create queued jobs NOTIFY ``WAKE_CHANNEL`` with
    each of their queues, in their own transaction, for idle database-dispatch workers."""

    def __init__(self, engine: Engine, wake: bool = False) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.wake_channel = WAKE_CHANNEL if wake and self.dialect == "postgresql" else None
        self.bulk_store = BulkStore(engine)

    # -- insert -----------------------------------------------------------------------------

    @translate_errors
    def insert(self, new_jobs: Sequence[NewJob], conn: Connection | None = None) -> list[Inserted]:
        """Insert jobs in one transaction (the caller's, when ``conn`` is given)."""
        if conn is not None:
            return self._insert(conn, new_jobs)
        if self.dialect == "postgresql" and all(j.idempotency_key is None for j in new_jobs):
            # One INSERT, atomic by itself: sent without BEGIN/COMMIT round trips.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as own:
                return self._insert(own, new_jobs)
        with self.engine.begin() as own:
            return self._insert(own, new_jobs)

    def _insert(self, conn: Connection, new_jobs: Sequence[NewJob]) -> list[Inserted]:
        if self.dialect == "postgresql":
            plain_jobs = [job for job in new_jobs if job.idempotency_key is None]
            if plain_jobs:
                pg.insert_rows(conn, plain_jobs, self.wake_channel)
        else:
            plain = [_row(job) for job in new_jobs if job.idempotency_key is None]
            if plain:
                conn.execute(jobs.insert(), plain)
        results: list[Inserted] = []
        keyed: set[str] = set()  # queues of keyed jobs created queued
        for job in new_jobs:
            if job.idempotency_key is None:
                results.append(Inserted(job.id, job.queue, job.state, True))
            else:
                inserted = self._insert_keyed(conn, job)
                results.append(inserted)
                if inserted.created and inserted.state is State.QUEUED:
                    keyed.add(inserted.queue)
        if self.wake_channel and keyed:
            for queue in sorted(keyed):
                conn.execute(pg.NOTIFY, {"channel": self.wake_channel, "payload": queue})
        return results

    def _insert_keyed(self, conn: Connection, job: NewJob) -> Inserted:
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(jobs).values(_row(job)).on_conflict_do_nothing().returning(jobs.c.id)
        if conn.execute(stmt).first() is not None:
            return Inserted(job.id, job.queue, job.state, True)
        existing = conn.execute(
            select(jobs.c.id, jobs.c.queue, jobs.c.state, jobs.c.payload_hash).where(
                jobs.c.idempotency_key == job.idempotency_key
            )
        ).first()
        if existing is None:  # deleted between the two statements: retention raced us
            raise IdempotencyConflict(job.idempotency_key or "", "(deleted)")
        if existing.payload_hash != job.payload_hash:
            raise IdempotencyConflict(job.idempotency_key or "", str(existing.id))
        return Inserted(str(existing.id), existing.queue, State(existing.state), False)

    # -- read -------------------------------------------------------------------------------

    @translate_errors
    def get(self, job_id: str, *, with_attempts: bool = True) -> JobView:
        job_id = _known_id(job_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                raise JobNotFound(job_id)
            history: list[AttemptView] = []
            if with_attempts:
                history = [
                    _attempt_view(a)
                    for a in conn.execute(
                        select(attempts)
                        .where(attempts.c.job_id == job_id)
                        .order_by(attempts.c.attempt)
                    )
                ]
                completed = row.state == State.COMPLETED.value
                if completed and recorded_by_job_row(row.attempt, AttemptOutcome.COMPLETED):
                    history = history or [_first_attempt(row)]
        return job_view(row, history)

    @translate_errors
    def list(
        self,
        *,
        state: State | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Newest first, by keyset on the time-ordered id: no scan, no count."""
        limit = max(1, min(limit, MAX_PAGE))
        conditions = filter_conditions(JobFilter(state, type, queue, created_after, created_before))
        if conditions is None:
            return Page([], None)
        query: Select[Any] = (
            select(jobs).where(*conditions).order_by(jobs.c.id.desc()).limit(limit + 1)
        )
        if cursor is not None:
            if not is_job_id(cursor):
                raise ValueError(f"invalid cursor {cursor!r}")
            query = query.where(jobs.c.id < cursor.lower())
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        items = [job_view(row, []) for row in rows[:limit]]
        next_cursor = items[-1].id if len(rows) > limit else None
        return Page(items, next_cursor)

    # -- change -----------------------------------------------------------------------------

    @translate_errors
    def cancel(self, job_id: str, now: datetime) -> tuple[JobView, bool]:
        """Cancel a job: waiting ones at once, running ones by request to their worker.

        Returns the job and whether this call changed it. Canceling a canceled job is harmless.
        """
        with self.engine.begin() as conn:
            return self.cancel_in(conn, job_id, now)

    def cancel_in(self, conn: Connection, job_id: str, now: datetime) -> tuple[JobView, bool]:
        """cancel() inside the caller's transaction."""
        job_id = _known_id(job_id)
        row = self._lock(conn, job_id)
        state = State(row.state)
        if state is State.CANCELED:
            return job_view(row, []), False
        check_transition(job_id, state, State.CANCELED)
        values = cancel_values(state is State.RUNNING, now)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        changed = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        return job_view(changed, []), True

    @translate_errors
    def retry(self, job_id: str, now: datetime) -> JobView:
        """Put a failed or canceled job back to queued with a fresh attempt budget."""
        job_id = _known_id(job_id)
        with self.engine.begin() as conn:
            row = self._lock(conn, job_id)
            state = State(row.state)
            if state not in RETRYABLE:
                raise IllegalTransition(job_id, state.value, State.QUEUED.value)
            conn.execute(
                update(jobs)
                .where(and_(jobs.c.id == job_id, jobs.c.state == state.value))
                .values(**retry_values(now))
            )
            changed = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
        return job_view(changed, [])

    def bulk(
        self,
        action: BulkAction,
        job_filter: JobFilter,
        now: Callable[[], datetime],
        *,
        batch_size: int = DEFAULT_BATCH,
        cursor: str | None = None,
    ) -> Iterator[BulkBatch]:
        """Retry, cancel or delete every job ``job_filter`` matches whose state allows it, a
        committed batch at a time, newest first: ``BulkStore.batches``."""
        return self.bulk_store.batches(
            action, job_filter, now, batch_size=batch_size, cursor=cursor
        )

    def _lock(self, conn: Connection, job_id: str) -> Row[Any]:
        query = select(jobs).where(jobs.c.id == job_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise JobNotFound(job_id)
        return row


def _known_id(job_id: str) -> str:
    """``job_id`` as stored (lower case); JobNotFound unless it is a canonical id."""
    if not is_job_id(job_id):
        raise JobNotFound(job_id)
    return job_id.lower()


def _row(job: NewJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "state": job.state.value,
        "payload": job.payload,
        "max_attempts": job.max_attempts,
        "timeout_s": job.timeout_s,
        "idempotency_key": job.idempotency_key,
        "payload_hash": job.payload_hash,
        "meta": job.meta,
        "created_at": job.created_at,
        "scheduled_at": job.scheduled_at,
        "updated_at": job.created_at,
        "attempt": 0,
        "uncharged": 0,
        "cancel_requested": False,
    }


def job_view(row: Row[Any], history: list[AttemptView]) -> JobView:
    m = row._mapping
    return JobView(
        id=str(m["id"]),
        type=m["type"],
        queue=m["queue"],
        state=State(m["state"]),
        payload=m["payload"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        created_at=m["created_at"],
        scheduled_at=m["scheduled_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        stage=m["stage"],
        progress=m["progress"],
        message=m["message"],
        result=m["result"],
        error=m["error"],
        idempotency_key=m["idempotency_key"],
        cancel_requested=bool(m["cancel_requested"]),
        worker_id=m["worker_id"],
        timeout_s=m["timeout_s"],
        updated_at=m["updated_at"],
        meta=m["meta"],
        attempts=history,
    )


def _first_attempt(job: Row[Any]) -> AttemptView:
    """The attempt a job completed at first try: its row alone records it (``RunStore``
    writes no attempt row for it: ``recorded_by_job_row``)."""
    return AttemptView(
        attempt=ROW_RECORDED_ATTEMPT,
        worker_id=job.worker_id,
        started_at=job.started_at,
        finished_at=job.finished_at,
        outcome=AttemptOutcome.COMPLETED.value,
    )


def _attempt_view(row: Row[Any]) -> AttemptView:
    m = row._mapping
    return AttemptView(
        attempt=m["attempt"],
        worker_id=m["worker_id"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        outcome=m["outcome"],
        error_type=m["error_type"],
        error_message=m["error_message"],
        traceback=m["traceback"],
    )
