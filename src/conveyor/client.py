"""The one way to change a job from outside: enqueue, get, list, cancel, retry."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor import faults
from conveyor.core.durations import Duration, parse_duration, parse_timeout
from conveyor.core.errors import ConveyorError, InvalidPayload, PayloadTooLarge, WaitTimeout
from conveyor.core.ids import new_job_id
from conveyor.core.names import check_queue_name
from conveyor.core.registry import Registry
from conveyor.core.settings import Settings
from conveyor.core.states import State
from conveyor.core.storable import Unstorable, checked_json, text_problem
from conveyor.core.views import JobView, Page
from conveyor.dispatch.base import Events, Handoff
from conveyor.store import Inserted, JobStore, NewJob
from conveyor.store.clock import DbClock
from conveyor.store.transactional import caller_connection, on_commit

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
    connection: Any = None


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    type: str
    payload: Mapping[str, Any] | None
    options: EnqueueOptions = EnqueueOptions()


def _checked_size(job_type: str, payload: dict[str, Any]) -> int:
    """Bytes of the payload as stored; InvalidPayload naming each field that cannot be
    stored (the one storability check, ``core.storable``)."""
    try:
        return checked_json(payload, "the payload")[1]
    except Unstorable as exc:
        raise InvalidPayload(job_type, exc.problems) from None


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
        when ``connection`` is given, dispatched after it commits)."""
        conn = connection
        if conn is None:
            inserted = self.jobs.insert(new_jobs)
        else:
            inserted = self.jobs.insert(new_jobs, caller_connection(conn))
        ready = [(i.queue, i.id) for i in inserted if i.created and i.state is State.QUEUED]
        if ready:
            if conn is None:
                faults.point("after_commit")
                self.dispatch(ready)
            else:
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
        )

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
            self._announce(view.id)
        return view

    def retry(self, job_id: str) -> JobView:
        view = self.jobs.retry(job_id, self.clock.now())
        self.dispatch([(view.queue, view.id)])
        self._announce(view.id)
        return view

    def _announce(self, job_id: str) -> None:
        try:
            self.events.publish([job_id])
        except Exception as exc:  # event streams fall back to polling
            log.debug("publishing a job event failed: %s", exc)


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
