"""Operational views: job types, queues, workers, health, readiness, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from conveyor.api.deps import ConveyorDep
from conveyor.api.metrics import render_metrics
from conveyor.api.schemas import (
    Check,
    HistoryPublic,
    JobTypePublic,
    QueuePublic,
    Readiness,
    WorkerPublic,
)
from conveyor.app import Conveyor
from conveyor.core.names import check_queue_name
from conveyor.store.schema import schema_problem
from conveyor.store.stats import QUEUE_LIMIT
from conveyor.store.workers import alive_since

TRUNCATED_HEADER = "X-Conveyor-Queues-Truncated"
_TRUNCATED_DOC = f"true when more queues had jobs than the {QUEUE_LIMIT:,} listed"

router = APIRouter(tags=["system"])
public = APIRouter(tags=["system"])


@router.get("/job-types", response_model=list[JobTypePublic])
def job_types(conveyor: ConveyorDep) -> list[JobTypePublic]:
    """Registered job types with their payload JSON schema and defaults."""
    return [
        JobTypePublic(
            name=t.name,
            queue=t.queue,
            max_attempts=t.policy.max_attempts,
            backoff_base_s=t.policy.base_s,
            backoff_cap_s=t.policy.cap_s,
            timeout_s=t.timeout_s,
            stages=list(t.stages),
            payload_schema=t.json_schema(),
        )
        for t in sorted(conveyor.registry, key=lambda t: t.name)
    ]


@router.get(
    "/queues",
    response_model=list[QueuePublic],
    responses={200: {"headers": {TRUNCATED_HEADER: {"description": _TRUNCATED_DOC}}}},
)
def queues(request: Request, response: Response, conveyor: ConveyorDep) -> list[QueuePublic]:
    """Per queue: jobs by active state, oldest queued age, the last minute's throughput; at
    most 1,000 queues, those with the most active jobs (then by name)."""
    stats = conveyor.services.stats
    now = conveyor.client.clock.now  # the database's time, which the rows are on
    overview = request.app.state.views.get("queues", lambda: stats.queue_overview(now()))
    response.headers[TRUNCATED_HEADER] = "true" if overview.truncated else "false"
    since = alive_since(now(), conveyor.settings.heartbeat_seconds)
    serving = conveyor.services.workers.serving(since)
    return [
        QueuePublic(name=name, served=name in serving, **data)
        for name, data in overview.queues.items()
    ]


@router.get("/stats/history", response_model=HistoryPublic)
def history(
    request: Request,
    conveyor: ConveyorDep,
    minutes: Annotated[int, Query(ge=1, le=1440)] = 60,
    queue: Annotated[str | None, Query(max_length=200)] = None,
) -> HistoryPublic:
    """Per minute for the last ``minutes`` (the current one included), in total and per
    queue: completed, failed, retried and canceled attempts, mean wait and run, wait
    percentiles, queued and running depth; and each one's last 5 minutes. From the
    per-minute table (kept a day), not the jobs."""
    if queue is not None:
        check_queue_name(queue)  # 422 invalid_queue_name
    stats, now = conveyor.services.stats, conveyor.client.clock.now
    found = request.app.state.views.get(
        f"history:{minutes}:{queue}", lambda: stats.history(now(), minutes, queue)
    )
    return HistoryPublic.model_validate(asdict(found))


@router.get("/workers", response_model=list[WorkerPublic])
def workers(conveyor: ConveyorDep) -> list[WorkerPublic]:
    """Workers that sent a heartbeat recently."""
    since = alive_since(conveyor.client.clock.now(), conveyor.settings.heartbeat_seconds)
    return [WorkerPublic(**w) for w in conveyor.services.workers.alive(since)]


@public.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(conveyor: ConveyorDep) -> JSONResponse:
    """Whether the database answers with the schema this Conveyor needs, and Redis answers;
    each reported."""
    database = await _check(lambda: conveyor.services.stats.ping())
    migrations = Check(ok=False, detail="the database does not answer")
    if database.ok:
        migrations = await _check(lambda: _schema_current(conveyor))
    redis = None
    streams = conveyor.services.streams
    if streams is not None:
        redis = await _check(streams.ping)
    ready = database.ok and migrations.ok and (redis is None or redis.ok)
    body = Readiness(
        status="ready" if ready else "unavailable",
        database=database,
        migrations=migrations,
        redis=redis,
    )
    headers = None if ready else {"Retry-After": "5"}
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503, headers=headers)


def _schema_current(conveyor: Conveyor) -> None:
    problem = schema_problem(conveyor.services.engine)
    if problem is not None:
        raise RuntimeError(problem)


async def _check(probe) -> Check:  # type: ignore[no-untyped-def]
    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout=4.5)
    except Exception as exc:
        text = str(getattr(exc, "orig", exc)).strip().splitlines()
        return Check(ok=False, detail=text[0] if text else type(exc).__name__)
    return Check(ok=True)


@router.get("/metrics", response_class=Response)
def metrics(request: Request, conveyor: ConveyorDep) -> Response:
    """Prometheus metrics; concurrent scrapes share one render."""
    enqueued = request.app.state.enqueued
    views = request.app.state.views
    body, content_type = views.get("metrics", lambda: render_metrics(enqueued, conveyor))
    return Response(body, media_type=content_type)
