"""The dashboard's pages (GET): overview, jobs, a job, workers, schedules, login."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from conveyor.core.access import Role
from conveyor.core.errors import (
    ConveyorError,
    DatabaseUnavailable,
    IllegalTransition,
    JobNotFound,
    ScheduleNotFound,
)
from conveyor.core.ids import is_job_id
from conveyor.core.states import RETRYABLE, TERMINAL, State
from conveyor.dashboard import charts, data
from conveyor.dashboard.web import (
    Redirect,
    Refused,
    Viewer,
    access_of,
    conveyor_of,
    csrf_for,
    query,
    redirect,
    render,
    root_of,
    viewer,
)
from conveyor.scheduler import shared_scheduler

log = logging.getLogger("conveyor.dashboard")
router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE_SIZE = 50


def guarded(page: Callable[..., Response]) -> Callable[..., Response]:
    """A page that answers with a page whatever goes wrong: the login form, a 403, a 404, or
    a 503 that names the unreachable service."""

    @functools.wraps(page)
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        started = time.perf_counter()
        try:
            response = page(request, *args, **kwargs)
        except Exception as exc:
            response = failure(request, exc)
        elapsed_ms = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"page;dur={elapsed_ms:.1f}"  # browsers show it
        return response

    return wrapper


def failure(request: Request, exc: Exception) -> Response:
    if isinstance(exc, Redirect):
        return redirect(request, exc.location)
    who = _anyone(request)
    if isinstance(exc, Refused):
        return render(request, "error.html", who, 403, title="Not allowed", message=exc.message)
    if isinstance(exc, JobNotFound | ScheduleNotFound):
        title = "No such job" if isinstance(exc, JobNotFound) else "No such schedule"
        return render(request, "error.html", who, 404, title=title, message=exc.message)
    if isinstance(exc, DatabaseUnavailable):
        return render(
            request, "error.html", who, 503, title="Database unreachable", message=exc.message
        )
    if isinstance(exc, ConveyorError):
        status = 409 if isinstance(exc, IllegalTransition) else 422
        return render(
            request, "error.html", who, status, title="Cannot do that", message=exc.message
        )
    log.exception("dashboard page %s failed", request.url.path)
    message = f"{type(exc).__name__}: the server's log has the details"  # not the text: secrets
    return render(request, "error.html", who, 500, title="Something broke", message=message)


def _anyone(request: Request) -> Viewer:
    try:
        return viewer(request)
    except Redirect:
        return Viewer(root_of(request), Role.READ, True, True, "")


@router.get("", response_class=HTMLResponse)
@guarded
def overview(request: Request) -> Response:
    who = viewer(request)
    conveyor = conveyor_of(request)
    health = data.health(conveyor)
    queues: dict[str, Any] = {}
    history = None
    workers: list[data.WorkerRow] = []  # alive ones
    now = None
    if health.database is None:
        now = conveyor.client.clock.now()
        queues = conveyor.services.stats.queue_overview(now).queues
        history = conveyor.services.stats.history(now, minutes=60)
        queues = data.with_recent_queues(queues, history)
        workers = [w for w in data.workers(conveyor, now) if w.alive]
    return render(
        request,
        "overview.html",
        who,
        health=health,
        queues=queues,
        charts=charts.overview(history) if history is not None else None,
        recent=charts.recent(history) if history is not None else {},
        workers=workers,
        serving={q for w in workers for q, _ in w.weights},
        now=now,
    )


@router.get("/jobs", response_class=HTMLResponse)
@guarded
def jobs_page(request: Request) -> Response:
    who = viewer(request)
    conveyor = conveyor_of(request)
    params = dict(request.query_params)
    wanted = (params.get("id") or "").strip()
    if wanted:  # paste an id, land on the job
        if is_job_id(wanted):
            return redirect(request, f"{who.ui}/jobs/{wanted.lower()}")
        raise JobNotFound(wanted)
    now = conveyor.client.clock.now()
    try:
        flt = data.job_filter(params, now)
    except data.BadFilter as exc:
        return render(request, "error.html", who, 422, title="Bad filter", message=exc.message)
    cursor = params.get("cursor") or None
    if cursor is not None and not is_job_id(cursor):
        return render(request, "error.html", who, 422, title="Bad page", message="bad cursor")
    page = conveyor.client.list(**flt.store_filters(), cursor=cursor, limit=PAGE_SIZE)
    items = [conveyor.registry.shown(v) for v in page.items]
    return render(
        request,
        "jobs.html",
        who,
        items=items,
        flt=flt,
        cursor=cursor,
        next_link=query(**flt.params(), cursor=page.next_cursor) if page.next_cursor else None,
        first_link=query(**flt.params()),
        types=conveyor.registry.names(),
        states=list(State),
        since_choices=list(data.SINCE),
        notice=_notice(params),
        now=now,
    )


def _notice(params: dict[str, str]) -> str | None:
    """The outcome of the action that redirected here (only known words and a number)."""
    done, changed = params.get("done"), params.get("changed", "")
    past = {"retry": "Retried", "cancel": "Canceled", "delete": "Deleted"}
    if done in past and changed.isdigit():
        more = " (more remain: repeat to go on)" if params.get("more") == "1" else ""
        return f"{past[done]} {int(changed):,} job{'s' if changed != '1' else ''}.{more}"
    return None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
@guarded
def job_page(request: Request, job_id: str) -> Response:
    who = viewer(request)
    conveyor = conveyor_of(request)
    job = conveyor.registry.shown(conveyor.client.get(job_id))
    job = replace(job, attempts=data.attempts(job))
    return render(
        request,
        "job.html",
        who,
        job=job,
        now=conveyor.client.clock.now(),
        timeline=charts.timeline(job),
        may_cancel=job.state not in TERMINAL and not job.cancel_requested,
        may_retry=job.state in RETRYABLE,
        notice=request.query_params.get("notice") in ("canceled", "retried")
        and f"Job {request.query_params['notice']}.",
        events_url=f"{who.root}/jobs/{job.id}/events",
    )


@router.get("/workers", response_class=HTMLResponse)
@guarded
def workers_page(request: Request) -> Response:
    who = viewer(request)
    conveyor = conveyor_of(request)
    now = conveyor.client.clock.now()
    return render(request, "workers.html", who, workers=data.workers(conveyor, now), now=now)


@router.get("/schedules", response_class=HTMLResponse)
@guarded
def schedules_page(request: Request) -> Response:
    who = viewer(request)
    conveyor = conveyor_of(request)
    scheduler = shared_scheduler(request.app.state, conveyor)
    rows = []
    for row in scheduler.store.all():
        fires = scheduler.store.fires(row["name"], limit=1)
        payload = conveyor.registry.masked_payload(row["job_type"], row["payload"])
        rows.append({**row, "payload": payload, "last_fire": fires[0] if fires else None})
    return render(
        request,
        "schedules.html",
        who,
        schedules=rows,
        now=conveyor.client.clock.now(),
        notice=request.query_params.get("notice"),
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    who = Viewer(root_of(request), Role.READ, True, False, csrf_for(request))
    if not access_of(request).required:
        return redirect(request, who.ui)
    failed = request.query_params.get("failed") == "1"
    return render(
        request,
        "login.html",
        who,
        failed=failed,
        next=safe_next(request, request.query_params.get("next")),
    )


def safe_next(request: Request, target: str | None) -> str:
    """Where to go after logging in: a page of this dashboard, never another site."""
    ui = f"{root_of(request)}/ui"
    inside = target is not None and (target == ui or target.startswith((f"{ui}/", f"{ui}?")))
    if inside and target is not None and "//" not in target and "\\" not in target:
        return target
    return ui
