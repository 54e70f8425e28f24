"""The one way to change a job from outside: enqueue, get, list, cancel, retry; retry,
cancel or delete in bulk by a filter."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor import faults
from conveyor.core import tracing, webhooks
from conveyor.core.durations import Duration, parse_duration, parse_timeout
from conveyor.core.errors import (
    ConveyorError,
    InvalidBulkRequest,
    InvalidPayload,
    PayloadTooLarge,
    WaitTimeout,
)
from conveyor.core.ids import is_job_id, new_job_id
from conveyor.core.logs import log_job
from conveyor.core.names import check_queue_name
from conveyor.core.registry import JobType, Registry
from conveyor.core.settings import Settings
from conveyor.core.states import State
from conveyor.core.storable import Unstorable, checked_json, text_problem
from conveyor.core.views import BulkAction, BulkResult, JobFilter, JobView, Page
from conveyor.core.webhooks import check_webhook_url
from conveyor.dispatch.base import Events, Handoff
from conveyor.store import Inserted, JobStore, NewJob
from conveyor.store.bulk import DEFAULT_BATCH, MAX_BATCH, Changed
from conveyor.store.clock import DbClock

log = logging.getLogger("conveyor.client")


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """Per-enqueue overrides of a job type's defaults; never part of the payload."""

    queue: str | None = None
    delay: Duration | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    retries: int | None = None
    timeout: Duration | None = None
    idempotency_key: str | None = None
    webhook: str | None = None  # told when the job ends (core.webhooks)
    connection: Any = None


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    type: str
    payload: Mapping[str, Any] | None
    options: EnqueueOptions = EnqueueOptions()
    # The W3C trace context of the enqueue, when it was captured where the request was made:
    # the API's group commit writes in a context of its own (``enqueue_each`` makes no span).
    trace: Mapping[str, str] | None = None


def _checked_size(job_type: str, payload: dict[str, Any]) -> int:
    """Bytes of the payload as stored; InvalidPayload naming each field that cannot be
    stored (the one storability check, ``core.storable``)."""
    try:
        return checked_json(payload, "the payload")[1]
    except Unstorable as exc:
        raise InvalidPayload(job_type, exc.problems) from None


def _carrying(new_jobs: Sequence[NewJob], carrier: Mapping[str, str]) -> list[NewJob]:
    """The jobs with their enqueue's trace context in ``meta``, for their attempts' spans."""
    return [replace(j, meta=tracing.with_trace(j.meta, carrier)) for j in new_jobs]


class Client:
    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        jobs: JobStore,
        clock: DbClock,
        handoff: Handoff,
        events: Events,
    ) -> None:
        """``clock``: the database's time (created_at, due times, cancels); ``handoff``:
        where committed queued jobs go; ``events``: who hears of a cancel or a retry."""
        self.registry = registry
        self.settings = settings
        self.jobs = jobs
        self.clock = clock
        self.handoff = handoff
        self.events = events

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, connection: Any = None
    ) -> list[Inserted]:
        """Validate all, insert all in one transaction, dispatch in one round trip.

        Returns what each request resolved to (``created`` is False for an idempotent
        repeat); nothing is written when any request is bad.
        """
        now = self.clock.now()
        new_jobs = [self._new_job(r, now) for r in requests]
        conn = connection
        if conn is None:
            conn = next((r.options.connection for r in requests if r.options.connection), None)
        return self.insert_prepared(new_jobs, connection=conn)

    def insert_prepared(
        self, new_jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[Inserted]:
        """Insert jobs already validated by ``prepare_all`` (one transaction: the caller's
        when ``connection`` is given, dispatched after it commits), under one enqueue span
        whose context the jobs carry (``core.tracing``)."""
        with tracing.enqueue_span(new_jobs) as span:
            if span.carrier is not None:
                new_jobs = _carrying(new_jobs, span.carrier)
            return self._insert(new_jobs, connection)

    def _insert(self, new_jobs: Sequence[NewJob], connection: Any) -> list[Inserted]:
        conn = connection
        if conn is None:
            inserted = self.jobs.insert(new_jobs)
        else:  # the caller's transaction (SQLAlchemy's ORM is imported only for this)
            from conveyor.store.transactional import caller_connection

            inserted = self.jobs.insert(new_jobs, caller_connection(conn))
        if log.isEnabledFor(logging.DEBUG):  # a line per job an API enqueues: DEBUG
            for job, done in zip(new_jobs, inserted, strict=True):
                text = "enqueued" if done.created else "enqueued before (idempotency key)"
                log_job(log, logging.DEBUG, "enqueued", f"{text}, {done.state.value}",
                        job_id=done.id, job_type=job.type, queue=done.queue, attempt=0)  # fmt: skip
        ready = [(i.queue, i.id) for i in inserted if i.created and i.state is State.QUEUED]
        if ready:
            if conn is None:
                faults.point("after_commit")
                self.dispatch(ready)
            else:
                from conveyor.store.transactional import on_commit

                on_commit(conn, lambda: self.dispatch(ready))
        return inserted

    def enqueue_each(self, requests: Sequence[EnqueueRequest]) -> list[Inserted | ConveyorError]:
        """Enqueue the valid requests in one transaction; say why each other one was refused.

        For many independent callers at once (the API's group commit). Requests with an
        idempotency key do not belong here: a conflict would fail the whole transaction.
        """
        now = self.clock.now()
        outcome: list[Inserted | ConveyorError | None] = []
        valid: list[NewJob] = []
        for request in requests:
            try:
                valid.append(self._new_job(request, now))
                outcome.append(None)
            except ConveyorError as exc:
                outcome.append(exc)
        inserted = iter(self.jobs.insert(valid) if valid else [])
        results = [item if item is not None else next(inserted) for item in outcome]
        ready = [
            (i.queue, i.id) for i in results if isinstance(i, Inserted) and i.state is State.QUEUED
        ]
        if ready:
            self.dispatch(ready)
        return results

    def prepare_all(
        self, requests: Sequence[EnqueueRequest]
    ) -> tuple[list[NewJob], list[tuple[int, ConveyorError]]]:
        """The jobs the requests would create, and every refused request with why (validated
        once: pass the jobs to ``insert_prepared`` when there are no problems)."""
        now = self.clock.now()
        prepared: list[NewJob] = []
        found: list[tuple[int, ConveyorError]] = []
        for index, request in enumerate(requests):
            try:
                prepared.append(self._new_job(request, now))
            except ConveyorError as exc:
                found.append((index, exc))
        return prepared, found

    def prepare(self, request: EnqueueRequest, now: datetime) -> NewJob:
        """The job a request would create, validated; nothing is written."""
        return self._new_job(request, now)

    def _new_job(self, request: EnqueueRequest, now: datetime) -> NewJob:
        job_type = self.registry.get(request.type)
        payload = job_type.validate(request.payload)
        size = _checked_size(job_type.name, payload)
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLarge("payload", size, self.settings.max_payload_bytes)
        opts = request.options
        run_at = _run_at(opts, now)
        max_attempts = job_type.policy.max_attempts
        if opts.retries is not None:
            max_attempts = _positive(opts.retries, "retries", minimum=0) + 1
        if opts.max_attempts is not None:
            max_attempts = _positive(opts.max_attempts, "max_attempts", minimum=1)
        timeout_s = job_type.timeout_s
        if opts.timeout is not None:
            timeout_s = parse_timeout(opts.timeout)
        key = opts.idempotency_key
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= 255):
            raise ConveyorError("idempotency_key must be a string of 1 to 255 characters")
        queue = check_queue_name(job_type.queue if opts.queue is None else opts.queue)
        for name, text in (("queue", queue), ("idempotency_key", key)):
            if text is not None and text_problem(text):
                raise ConveyorError(f"{name} contains text that cannot be stored (e.g. \\u0000)")
        return NewJob(
            id=new_job_id(at_ms=int(now.timestamp() * 1000)),
            type=job_type.name,
            queue=queue,
            payload=payload,
            state=State.SCHEDULED if run_at and run_at > now else State.QUEUED,
            max_attempts=max_attempts,
            created_at=now,
            scheduled_at=run_at,
            timeout_s=timeout_s,
            idempotency_key=key,
            payload_hash=_payload_hash(job_type.name, payload, queue) if key else None,
            meta=self._meta(job_type, opts, request.trace),
        )

    def _meta(
        self, job_type: JobType, opts: EnqueueOptions, trace: Mapping[str, str] | None
    ) -> dict[str, Any] | None:
        """Conveyor's own facts about a new job (``NewJob.meta``): the webhook URL per
        terminal state, resolved now (the enqueue's, its type's, the global ones), so that
        whoever ends the job need not know the type or the settings; and ``trace``, the
        trace context of the request that enqueued it, when one was passed along."""
        own = None if opts.webhook is None else check_webhook_url(opts.webhook)
        s = self.settings
        urls = webhooks.urls_for(
            job_type.name, own, job_type.webhook,
            {State.COMPLETED: s.webhook_completed, State.FAILED: s.webhook_failed,
             State.CANCELED: s.webhook_canceled},
        )  # fmt: skip
        meta = None if urls is None else {webhooks.META_URLS: urls}
        return tracing.with_trace(meta, trace) if trace else meta

    def dispatch(self, ready: list[tuple[str, str]]) -> None:
        try:
            self.handoff.push(ready)
        except Exception as exc:  # the job is durable; the reconciler dispatches it later
            log.warning("dispatch of %d job(s) failed, they stay queued: %s", len(ready), exc)

    # -- read -------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobView:
        return self.jobs.get(job_id)

    def list(self, **filters: Any) -> Page:
        if filters.get("state") is not None:
            filters["state"] = State(filters["state"])
        return self.jobs.list(**filters)  # a name no job can have finds nothing there

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 0.05) -> JobView:
        """Block until the job is terminal; raises WaitTimeout after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll_s
        while True:
            view = self.jobs.get(job_id, with_attempts=False)
            if view.terminal:
                return self.jobs.get(job_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {job_id} is still {view.state.value} after {timeout} s", job_id=job_id
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, 0.5)

    # -- change -----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobView:
        view, changed = self.jobs.cancel(job_id, self.clock.now())
        if changed:
            self._announce([view.id])
            running = view.state is State.RUNNING
            _log_view(view, "cancel_requested" if running else "canceled",
                      "asked to stop (its worker ends it)" if running else "canceled before it ran")  # fmt: skip
        return view

    def retry(self, job_id: str) -> JobView:
        view = self.jobs.retry(job_id, self.clock.now())
        self.dispatch([(view.queue, view.id)])
        self._announce([view.id])
        _log_view(view, "retried", "queued again by request (a fresh attempt budget)")
        return view

    def bulk(
        self,
        action: BulkAction | str,
        *,
        everything: bool = False,
        batch_size: int = DEFAULT_BATCH,
        max_batches: int | None = None,
        budget_s: float | None = None,
        cursor: str | None = None,
        **filters: Any,
    ) -> BulkResult:
        """Retry, cancel or delete every job matching ``filters`` (those of ``list``) whose
        state allows it, under the single-job rules, newest first, in committed batches.

        Retried jobs are dispatched and changed ones announced batch by batch. It stops
        after ``max_batches`` batches or once ``budget_s`` seconds have passed (checked
        between batches), with ``more`` set and a ``cursor`` to pass back. Jobs skipped
        meanwhile: running ones (never retried or deleted), ones already asked to stop, and
        on PostgreSQL rows locked by a worker's claim or finish at that instant. Cancel and
        delete refuse an empty filter unless ``everything`` is True.
        """
        act, job_filter = _bulk_request(action, filters, everything)
        batches = self.jobs.bulk(
            act, job_filter, self.clock.now, batch_size=_batch_size(batch_size),
            cursor=_cursor(cursor),
        )  # fmt: skip
        if max_batches is not None and not _whole(max_batches, 1):
            raise InvalidBulkRequest("max_batches must be a whole number >= 1")
        deadline = None if budget_s is None else time.monotonic() + budget_s
        changed = 0
        for done, batch in enumerate(batches, start=1):
            changed += len(batch.changed)
            self._publish_batch(act, batch.changed)
            out_of_bounds = (max_batches is not None and done >= max_batches) or (
                deadline is not None and time.monotonic() >= deadline
            )
            if batch.cursor is not None and out_of_bounds:
                _log_bulk(act, job_filter, changed, more=True)
                return BulkResult(act, changed, more=True, cursor=batch.cursor)
        _log_bulk(act, job_filter, changed, more=False)
        return BulkResult(act, changed)

    def _publish_batch(self, action: BulkAction, changed: Changed) -> None:
        """Hand retried jobs to the workers; tell event streams what changed."""
        if not changed:
            return
        if action is BulkAction.RETRY:
            self.dispatch(changed)
        self._announce([job_id for _, job_id in changed])

    def _announce(self, job_ids: Sequence[str]) -> None:
        try:
            self.events.publish(job_ids)
        except Exception as exc:  # event streams fall back to polling
            log.debug("publishing a job event failed: %s", exc)


_FILTERS = frozenset(JobFilter.__dataclass_fields__)
#: Actions that must name some filter (or say ``everything``): their mistakes cannot be undone.
_NEED_FILTER = frozenset({BulkAction.CANCEL, BulkAction.DELETE})


def _bulk_request(
    action: BulkAction | str, filters: Mapping[str, Any], everything: bool
) -> tuple[BulkAction, JobFilter]:
    """The action and filter, checked: InvalidBulkRequest names what is wrong."""
    try:
        act = BulkAction(action)
    except ValueError:
        known = ", ".join(a.value for a in BulkAction)
        raise InvalidBulkRequest(f"unknown bulk action {action!r}; known: {known}") from None
    unknown = sorted(set(filters) - _FILTERS)
    if unknown:
        raise InvalidBulkRequest(
            f"unknown filter {', '.join(unknown)}; filters: {', '.join(sorted(_FILTERS))}"
        )
    job_filter = JobFilter(
        state=_filter_state(filters.get("state")),
        type=_filter_text("type", filters.get("type")),
        queue=_filter_text("queue", filters.get("queue")),
        created_after=_filter_time("created_after", filters.get("created_after")),
        created_before=_filter_time("created_before", filters.get("created_before")),
    )
    if act in _NEED_FILTER and job_filter.empty and not everything:
        raise InvalidBulkRequest(
            f"refusing to {act.value} every job: give a filter (state, type, queue, "
            "created_after, created_before), or all=True to mean every job",
            action=act.value,
        )
    return act, job_filter


def _filter_state(value: Any) -> State | None:
    if value is None:
        return None
    try:
        return State(value)
    except ValueError:
        known = ", ".join(s.value for s in State)
        raise InvalidBulkRequest(f"unknown state {value!r}; states: {known}") from None


def _filter_text(name: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and value):
        raise InvalidBulkRequest(f"{name} must be a non-empty string, got {value!r}")
    return value


def _filter_time(name: str, value: Any) -> datetime | None:
    if value is not None and not (isinstance(value, datetime) and value.tzinfo is not None):
        raise InvalidBulkRequest(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


def _batch_size(value: Any) -> int:
    if not _whole(value, 1, MAX_BATCH):
        raise InvalidBulkRequest(f"batch_size must be a whole number from 1 to {MAX_BATCH}")
    return int(value)


def _whole(value: Any, low: int, high: int | None = None) -> bool:
    """Whether ``value`` is an int (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return low <= value and (high is None or value <= high)


def _cursor(value: str | None) -> str | None:
    if value is not None and not is_job_id(value):
        raise InvalidBulkRequest("cursor must be the cursor of a previous bulk result")
    return value.lower() if value is not None else None


def _run_at(opts: EnqueueOptions, now: datetime) -> datetime | None:
    try:
        return _checked_run_at(opts, now)
    except OverflowError:
        raise ConveyorError("delay or run_at is out of range") from None


def _checked_run_at(opts: EnqueueOptions, now: datetime) -> datetime | None:
    if opts.run_at is not None and opts.delay is not None:
        raise ConveyorError("give delay or run_at, not both")
    if opts.delay is not None:
        seconds = parse_duration(opts.delay, name="delay")
        return now + timedelta(seconds=seconds) if seconds > 0 else None
    if opts.run_at is not None:
        if not isinstance(opts.run_at, datetime):
            raise ConveyorError("run_at must be a datetime")
        if opts.run_at.tzinfo is None:
            raise ConveyorError("run_at must be timezone-aware (e.g. datetime.now(UTC))")
        return opts.run_at.astimezone(UTC)
    return None


def _positive(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConveyorError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def _payload_hash(job_type: str, payload: Mapping[str, Any], queue: str) -> str:
    canonical = json.dumps(
        {"type": job_type, "queue": queue, "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _log_view(view: JobView, event: str, text: str) -> None:
    log_job(log, logging.INFO, event, text, job_id=view.id, job_type=view.type,
            queue=view.queue, attempt=view.attempt)  # fmt: skip


def _log_bulk(action: BulkAction, job_filter: JobFilter, changed: int, more: bool) -> None:
    given = {f: getattr(job_filter, f) for f in _FILTERS}
    shown = {k: str(v) for k, v in sorted(given.items()) if v is not None} or "every job"
    log.info(
        "bulk %s of %s: %d job(s) changed%s", action.value, shown, changed,
        " (more remain)" if more else "",
        extra={"event": f"bulk_{action.value}", "changed": changed, "more": more},
    )  # fmt: skip
