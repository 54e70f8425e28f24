"""The dashboard's actions (POST forms): log in and out, cancel and retry a job, bulk
actions by filter, pause, resume and trigger a schedule.

Each goes through the client or store call the HTTP API makes, so the same rules hold
(legal transitions, fencing), and answers with a redirect to the page that shows the
outcome (post/redirect/get: a reload never repeats an action).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from conveyor.core.access import SESSION_COOKIE, SESSION_S
from conveyor.dashboard import data
from conveyor.dashboard.pages import failure, router, safe_next
from conveyor.dashboard.web import (
    access_of,
    check_post,
    conveyor_of,
    form_of,
    query,
    redirect,
    render,
    root_of,
)
from conveyor.scheduler import shared_scheduler

#: A bulk action stops after about this long ("more remain: repeat"), so a form never times out.
BULK_BUDGET_S = 15.0
VERBS = {"retry": "Retry", "cancel": "Cancel", "delete": "Delete"}
EXPLAIN = {
    "retry": "Failed and canceled jobs among them are queued again with a fresh attempt "
    "budget; their attempts stay in the history. Others are left alone.",
    "cancel": "Waiting jobs among them are canceled at once; running ones are told to stop. "
    "Finished jobs are left alone.",
    "delete": "Finished jobs among them (completed, failed, canceled) are deleted with their "
    "attempts, for good. Others are left alone.",
}


def guarded(action: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    @functools.wraps(action)
    async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await action(request, *args, **kwargs)
        except Exception as exc:
            return failure(request, exc)

    return wrapper


@router.post("/login")
@guarded
async def login(request: Request) -> Response:
    form = await form_of(request)
    check_post(request, form, action=False)
    target = safe_next(request, form.get("next"))
    cookie = access_of(request).open_session(form.get("token", ""), time.time())
    if cookie is None:
        return redirect(request, f"{root_of(request)}/ui/login{query(next=target, failed=1)}")
    response = redirect(request, target)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_S,
        path=f"{root_of(request)}/",  # the API's event streams read it too (reads only)
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
@guarded
async def logout(request: Request) -> Response:
    check_post(request, await form_of(request), action=False)
    response = redirect(request, f"{root_of(request)}/ui/login")
    response.delete_cookie(SESSION_COOKIE, path=f"{root_of(request)}/")
    return response


@router.post("/jobs/{job_id}/cancel")
@guarded
async def cancel(request: Request, job_id: str) -> Response:
    who = check_post(request, await form_of(request))
    job = await run_in_threadpool(conveyor_of(request).client.cancel, job_id)
    return redirect(request, f"{who.ui}/jobs/{job.id}?notice=canceled")


@router.post("/jobs/{job_id}/retry")
@guarded
async def retry(request: Request, job_id: str) -> Response:
    who = check_post(request, await form_of(request))
    job = await run_in_threadpool(conveyor_of(request).client.retry, job_id)
    return redirect(request, f"{who.ui}/jobs/{job.id}?notice=retried")


@router.post("/jobs/bulk")
@guarded
async def bulk(request: Request) -> Response:
    """First a confirmation page naming the filter; then, confirmed, the action in batches."""
    form = await form_of(request)
    who = check_post(request, form)
    conveyor = conveyor_of(request)
    action = form.get("action", "")
    if action not in VERBS:
        return render(request, "error.html", who, 422, title="Unknown action", message=action)
    now = await run_in_threadpool(conveyor.client.clock.now)
    flt = data.job_filter(form, now)
    if flt.empty and action != "retry":
        message = f"choose a filter first: {action} refuses to act on every job at once"
        return render(request, "error.html", who, 422, title="No filter", message=message)
    if form.get("confirmed") != "1":
        return render(
            request,
            "confirm.html",
            who,
            action=action,
            verb=VERBS[action],
            explain=EXPLAIN[action],
            flt=flt,
            back=query(**flt.params()),
        )
    done = await run_in_threadpool(
        functools.partial(
            conveyor.client.bulk, action, everything=flt.empty, budget_s=BULK_BUDGET_S,
            **flt.store_filters(),
        )
    )  # fmt: skip
    outcome = query(**flt.params(pinned=True), done=action, changed=done.changed,
                    more=1 if done.more else None)  # fmt: skip
    return redirect(request, f"{who.ui}/jobs{outcome}")


@router.post("/schedules/{verb}")
@guarded
async def schedule_action(request: Request, verb: str) -> Response:
    form = await form_of(request)
    who = check_post(request, form)
    name = form.get("name", "")
    scheduler = shared_scheduler(request.app.state, conveyor_of(request))
    if verb in ("pause", "resume"):
        now = await run_in_threadpool(scheduler.store.db_now)
        await run_in_threadpool(scheduler.store.change, name, {"paused": verb == "pause"}, now)
        notice = "paused" if verb == "pause" else "resumed"
    elif verb == "trigger":
        await run_in_threadpool(scheduler.trigger, name)
        notice = "triggered"
    else:
        return render(request, "error.html", who, 404, title="No such action", message=verb)
    return redirect(request, f"{who.ui}/schedules?notice={notice}")
