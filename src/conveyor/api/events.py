"""Server-Sent Events for one job: a snapshot, then every change, until it is terminal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from conveyor.api.hub import EventHub
from conveyor.api.views import shown
from conveyor.app import Conveyor
from conveyor.core.views import JobView

POLL_S = 0.2  # without Redis: how often a stream re-reads its job
SLOW_POLL_S = 2.0  # with Redis notices: the safety net


def version(view: JobView) -> int:
    """The event id of a view: microseconds of its last update, rising with every change."""
    if view.updated_at is None:
        return 0
    return int(view.updated_at.timestamp() * 1_000_000)


def _data(conveyor: Conveyor, view: JobView) -> dict[str, Any]:
    view = shown(conveyor, view)
    data: dict[str, Any] = {
        "id": view.id,
        "state": view.state.value,
        "stage": view.stage,
        "progress": view.progress,
        "message": view.message,
        "attempt": view.attempt,
    }
    if view.terminal:
        data["result"] = view.result
        data["error"] = view.error
    return data


def _event(kind: str, event_id: int, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


async def job_events(
    request: Request, conveyor: Conveyor, first: JobView, last_event_id: str | None
) -> AsyncIterator[str]:
    hub: EventHub | None = request.app.state.hub
    if hub is None:
        async for chunk in _stream(request, conveyor, first, last_event_id, None):
            yield chunk
        return
    changed = hub.watch(first.id)
    try:
        async for chunk in _stream(request, conveyor, first, last_event_id, changed):
            yield chunk
    finally:
        hub.unwatch(first.id, changed)


async def _stream(
    request: Request,
    conveyor: Conveyor,
    first: JobView,
    last_event_id: str | None,
    changed: asyncio.Event | None,
) -> AsyncIterator[str]:
    """Re-read the job when told it changed (pub/sub), or every POLL_S without Redis."""
    heartbeat_s = conveyor.settings.sse_heartbeat_seconds
    seen = _parse_id(last_event_id)
    view = first
    sent: tuple[Any, ...] | None = None
    last_sent_at = time.monotonic()
    yield f"retry: {int(POLL_S * 5 * 1000)}\n\n"
    while True:
        key = (view.state, view.stage, view.progress, view.message, view.attempt)
        if version(view) > seen and key != sent:
            kind = (
                "state"
                if sent is None or sent[0] != view.state or sent[4] != view.attempt
                else "progress"
            )
            yield _event(kind, version(view), _data(conveyor, view))
            sent, seen, last_sent_at = key, version(view), time.monotonic()
        if view.terminal:
            if sent is None:  # reconnected after the end: say so once more and stop
                yield _event("state", version(view), _data(conveyor, view))
            return
        if time.monotonic() - last_sent_at >= heartbeat_s:
            yield ": keep-alive\n\n"
            last_sent_at = time.monotonic()
        if await request.is_disconnected():
            return
        if changed is None:
            await asyncio.sleep(POLL_S)
        else:
            try:  # notices can be lost (Redis restarts): poll slowly as well
                await asyncio.wait_for(changed.wait(), SLOW_POLL_S)
            except TimeoutError:
                pass
            changed.clear()
        view = await asyncio.to_thread(conveyor.client.jobs.get, view.id, with_attempts=False)


def _parse_id(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0
