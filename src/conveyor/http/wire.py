"""What goes over the wire, shared by the sync and the async client: each operation as a
``Call`` (method, path, body, how to read the answer), JSON to ``JobView``/``Page``, and
Server-Sent Events to dicts. No I/O here: the two clients only send calls."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from conveyor.core.states import State
from conveyor.core.views import AttemptView, BulkAction, BulkResult, JobView, Page

T = TypeVar("T")

#: GET /jobs takes at most this many per page.
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an enqueue answered: ``created`` is False when an idempotency key matched."""

    id: str
    state: State
    created: bool


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job to enqueue: the fields of ``POST /jobs`` (``delay`` and ``timeout`` are
    seconds or a duration such as ``'10m'``; ``run_at`` needs a time zone)."""

    type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    delay: float | str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout: float | str | None = None
    idempotency_key: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body, leaving out what is not set (the job type's defaults apply)."""
        body: dict[str, Any] = {"type": self.type, "payload": dict(self.payload)}
        for name in ("queue", "delay", "max_attempts", "timeout", "idempotency_key"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.run_at is not None:
            body["run_at"] = self.run_at.isoformat()
        return body


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read a successful answer's JSON."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, str] | None = None


def job_path(job_id: str, *rest: str) -> str:
    return "/".join(["/jobs", quote(job_id, safe=""), *rest])


# -- the calls -------------------------------------------------------------------------------


def enqueue(request: JobRequest) -> Call[Accepted]:
    return Call("POST", "/jobs", accepted, json=request.body())


def enqueue_many(requests: list[JobRequest]) -> Call[list[Accepted]]:
    body = {"jobs": [r.body() for r in requests]}
    return Call("POST", "/jobs/batch", lambda d: [accepted(j) for j in d["jobs"]], json=body)


def get(job_id: str) -> Call[JobView]:
    return Call("GET", job_path(job_id), job_view)


def cancel(job_id: str) -> Call[JobView]:
    return Call("POST", job_path(job_id, "cancel"), job_view)


def retry(job_id: str) -> Call[JobView]:
    return Call("POST", job_path(job_id, "retry"), job_view)


def list_jobs(filters: Mapping[str, Any], cursor: str | None, limit: int) -> Call[Page]:
    params = {**_query(filters), "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/jobs", page, params=params)


def bulk(
    action: BulkAction | str, filters: Mapping[str, Any], everything: bool, cursor: str | None
) -> Call[BulkResult]:
    body: dict[str, Any] = {"action": str(action), "filter": _query(filters), "all": everything}
    if cursor is not None:
        body["cursor"] = cursor
    return Call("POST", "/jobs/bulk", bulk_result, json=body)


def _query(filters: Mapping[str, Any]) -> dict[str, str]:
    """The job filter (state, type, queue, created_after, created_before) as strings."""
    out: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


# -- reading answers -------------------------------------------------------------------------


def accepted(data: Mapping[str, Any]) -> Accepted:
    return Accepted(id=data["id"], state=State(data["state"]), created=bool(data["created"]))


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _attempt(data: Mapping[str, Any]) -> AttemptView:
    error = data.get("error") or {}
    return AttemptView(
        attempt=data["attempt"],
        worker_id=data.get("worker_id"),
        started_at=_time(data.get("started_at")),
        finished_at=_time(data.get("finished_at")),
        outcome=data["outcome"],
        error_type=error.get("type"),
        error_message=error.get("message"),
        traceback=error.get("traceback"),
    )


def job_view(data: Mapping[str, Any]) -> JobView:
    """``JobPublic`` JSON as the Python client's ``JobView`` (``worker_id``, ``updated_at``
    and ``meta`` are not served, so they stay None)."""
    created_at = _time(data["created_at"])
    assert created_at is not None
    return JobView(
        id=data["id"],
        type=data["type"],
        queue=data["queue"],
        state=State(data["state"]),
        payload=data.get("payload") or {},
        attempt=data["attempt"],
        max_attempts=data["max_attempts"],
        created_at=created_at,
        scheduled_at=_time(data.get("scheduled_at")),
        started_at=_time(data.get("started_at")),
        finished_at=_time(data.get("finished_at")),
        stage=data.get("stage"),
        progress=data.get("progress"),
        message=data.get("message"),
        result=data.get("result"),
        error=data.get("error"),
        idempotency_key=data.get("idempotency_key"),
        cancel_requested=bool(data.get("cancel_requested")),
        timeout_s=data.get("timeout_s"),
        attempts=[_attempt(a) for a in data.get("attempts") or []],
    )


def page(data: Mapping[str, Any]) -> Page:
    return Page(items=[job_view(j) for j in data["items"]], next_cursor=data.get("next_cursor"))


def bulk_result(data: Mapping[str, Any]) -> BulkResult:
    return BulkResult(
        action=BulkAction(data["action"]),
        changed=data["changed"],
        more=data["more"],
        cursor=data.get("cursor"),
    )


# -- Server-Sent Events ----------------------------------------------------------------------


class EventParser:
    """Lines of a ``text/event-stream`` in, one dict per event out: the event's data with
    ``event`` (``state`` or ``progress``) and ``event_id`` added. Comments (keep-alives)
    and retry hints give nothing."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.event_id: str | None = None
        self.data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.kind = value
        elif name == "id":
            self.event_id = value
        elif name == "data":
            self.data.append(value)
        return None

    def _dispatch(self) -> dict[str, Any] | None:
        kind, event_id, data = self.kind, self.event_id, self.data
        self.kind, self.event_id, self.data = None, None, []
        if not data:
            return None
        decoded = json.loads("\n".join(data))
        return {**decoded, "event": kind or "message", "event_id": event_id}
