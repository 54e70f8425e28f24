"""/jobs: enqueue, read, list, follow, cancel, retry; retry, cancel or delete in bulk."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from conveyor.api.deps import ClientDep, ConveyorDep, require_json
from conveyor.api.errors import ApiError
from conveyor.api.events import job_events
from conveyor.api.schemas import (
    BatchAccepted,
    BatchCreate,
    BulkCreate,
    BulkPublic,
    ErrorBody,
    JobAccepted,
    JobCreate,
    JobPage,
    JobPublic,
)
from conveyor.api.views import accepted, accepted_dict, job_public
from conveyor.client import EnqueueOptions, EnqueueRequest
from conveyor.core import tracing
from conveyor.core.durations import parse_instant
from conveyor.core.ids import is_job_id
from conveyor.core.states import State

ERRORS = {
    code: {"model": ErrorBody}
    for code in (400, 401, 404, 409, 413, 415, 422, 503)
}  # fmt: skip
router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERRORS)  # type: ignore[arg-type]

#: One POST /jobs/bulk does at most this many batches of BULK_BATCH jobs, for at most about
#: BULK_BUDGET_S seconds (checked between batches); then it answers ``more: true``.
BULK_BATCH = 1000
BULK_MAX_BATCHES = 100
BULK_BUDGET_S = 10.0


_NO_OPTIONS = EnqueueOptions()


def _request(body: JobCreate, header_key: str | None) -> EnqueueRequest:
    if header_key is None and not body.model_fields_set - {"type", "payload"}:
        return EnqueueRequest(body.type, body.payload, _NO_OPTIONS)  # the common case, cheaply
    key = body.idempotency_key
    if header_key is not None:
        if key is not None and key != header_key:
            raise ApiError(
                422,
                "idempotency_key_mismatch",
                "the Idempotency-Key header and the idempotency_key field differ",
            )
        key = header_key
    options = EnqueueOptions(
        queue=body.queue,
        delay=body.delay,
        run_at=body.run_at,
        max_attempts=body.max_attempts,
        timeout=body.timeout,
        idempotency_key=key,
        webhook=body.webhook,
    )
    return EnqueueRequest(body.type, body.payload, options)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    dependencies=[Depends(require_json)],
    responses={200: {"model": JobAccepted, "description": "An idempotent repeat"}},
)
async def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    client: ClientDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> JobAccepted:
    """Enqueue a job; its payload is validated against the job type's schema first."""
    enqueue = _request(body, idempotency_key)
    if enqueue.options.idempotency_key is None:
        # The group commit writes in a task of its own: the enqueue span is made here, in
        # the request's context, and its trace context travels with the request.
        with tracing.enqueue_span() as span:
            if span.carrier is not None:
                enqueue = replace(enqueue, trace=span.carrier)
            inserted = await request.app.state.batcher.submit(enqueue)
            span.one(inserted.id, body.type, inserted.queue)
    else:  # alone: a conflict must not fail anyone else's job
        (inserted,) = await run_in_threadpool(client.enqueue_many, [enqueue])
    if inserted.created:
        request.app.state.enqueued.add(body.type, inserted.queue)
    out = accepted(request, inserted.id, inserted.state, inserted.created)
    response.headers["Location"] = out.links.self
    if not inserted.created:
        response.status_code = 200
    return out


@router.post(
    "/batch",
    status_code=202,
    response_model=BatchAccepted,
    dependencies=[Depends(require_json)],
)
def create_batch(body: BatchCreate, request: Request, client: ClientDep) -> Response:
    """Enqueue up to 1,000 jobs in one transaction: all of them, or none."""
    requests = [_request(item, None) for item in body.jobs]
    prepared, refused = client.prepare_all(requests)
    problems = [
        {"index": i, "code": exc.code, "message": exc.message, "details": exc.details}
        for i, exc in refused
    ]
    if problems:
        raise ApiError(
            422,
            "invalid_batch",
            f"{len(problems)} of {len(requests)} jobs are invalid; nothing was enqueued",
            errors=problems,
        )
    inserted = client.insert_prepared(prepared)
    for item, done in zip(body.jobs, inserted, strict=True):
        if done.created:
            request.app.state.enqueued.add(item.type, done.queue)
    # Plain dicts serialised once (the BatchAccepted shape): every value comes from the
    # store, and building then re-checking 2,000 models cost more than the insert itself.
    out = {"jobs": [accepted_dict(request, i.id, i.state, i.created) for i in inserted]}
    return Response(json.dumps(out), status_code=202, media_type="application/json")


@router.post("/bulk", response_model=BulkPublic, dependencies=[Depends(require_json)])
def bulk_jobs(body: BulkCreate, client: ClientDep) -> BulkPublic:
    """Retry, cancel or delete every job the filter matches whose state allows it.

    The single-job rules apply: retry takes failed and canceled jobs; cancel takes jobs not
    yet finished (a running one is asked to stop); delete takes finished jobs, with their
    attempts. Newest first, in batches of 1,000, each its own transaction. A request stops
    after 100 batches or about 10 s and answers ``more: true`` with a ``cursor``: send the
    same body with that cursor to go on. Cancel and delete refuse an empty filter unless
    ``"all": true``.
    """
    if body.cursor is not None and not is_job_id(body.cursor):
        raise ApiError(422, "invalid_cursor", "cursor must be the cursor of a previous response")
    where = body.filter
    result = client.bulk(
        body.action,
        everything=body.all,
        batch_size=BULK_BATCH,
        max_batches=BULK_MAX_BATCHES,
        budget_s=BULK_BUDGET_S,
        cursor=body.cursor,
        state=where.state,
        type=where.type,
        queue=where.queue,
        created_after=_time("filter.created_after", where.created_after),
        created_before=_time("filter.created_before", where.created_before),
    )
    return BulkPublic(
        action=result.action, changed=result.changed, more=result.more, cursor=result.cursor
    )


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, request: Request, conveyor: ConveyorDep) -> JobPublic:
    """A job: state, stage, progress, payload, result, error, attempts, times."""
    return job_public(request, conveyor, conveyor.client.get(job_id))


TimeQuery = Query(
    max_length=64,
    json_schema_extra={"format": "date-time"},
    description="An RFC 3339 time with a zone, e.g. 2026-11-26T08:00:00Z.",
)


def _time(name: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(name, text)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


@router.get("", response_model=JobPage)
def list_jobs(
    request: Request,
    conveyor: ConveyorDep,
    state: State | None = None,
    type: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    queue: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    created_after: Annotated[str | None, TimeQuery] = None,
    created_before: Annotated[str | None, TimeQuery] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> JobPage:
    """Jobs newest first, by keyset pagination: pass ``next_cursor`` back as ``cursor``."""
    if cursor is not None and not is_job_id(cursor):
        raise ApiError(422, "invalid_cursor", "cursor must be a next_cursor from a previous page")
    page = conveyor.client.list(
        state=state,
        type=type,
        queue=queue,
        created_after=_time("created_after", created_after),
        created_before=_time("created_before", created_before),
        cursor=cursor,
        limit=limit,
    )
    items = [job_public(request, conveyor, v, with_attempts=False) for v in page.items]
    return JobPage(items=items, next_cursor=page.next_cursor)


@router.get("/{job_id}/webhooks", response_model=list[JobPublic])
def job_webhooks(job_id: str, request: Request, conveyor: ConveyorDep) -> list[JobPublic]:
    """The job's webhook deliveries, oldest first: one delivery job per end, each with its
    attempts (HTTP status or timeout of every failed try)."""
    return [job_public(request, conveyor, v) for v in conveyor.webhook_deliveries(job_id)]


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def follow_job(
    job_id: str,
    request: Request,
    conveyor: ConveyorDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: the job's state and progress changes until it is terminal."""
    import asyncio

    first = await asyncio.to_thread(conveyor.client.jobs.get, job_id, with_attempts=False)
    stream = job_events(request, conveyor, first, last_event_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, request: Request, conveyor: ConveyorDep) -> JobPublic:
    """Cancel: a waiting job at once, a running one by telling its worker. Repeatable."""
    return job_public(request, conveyor, conveyor.client.cancel(job_id), with_attempts=False)


@router.delete("/{job_id}", response_model=JobPublic)
def delete_job(job_id: str, request: Request, conveyor: ConveyorDep) -> JobPublic:
    """The same as POST /jobs/{id}/cancel."""
    return cancel_job(job_id, request, conveyor)


@router.post("/{job_id}/retry", response_model=JobPublic)
def retry_job(job_id: str, request: Request, conveyor: ConveyorDep) -> JobPublic:
    """Run a failed or canceled job again; its attempts stay in the history."""
    return job_public(request, conveyor, conveyor.client.retry(job_id), with_attempts=False)
