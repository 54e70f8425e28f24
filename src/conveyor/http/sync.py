"""``conveyor.http.Client``: the API from a service that does not import the job types."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from conveyor.core.errors import ConveyorError, WaitTimeout
from conveyor.core.states import State
from conveyor.core.views import BulkAction, BulkResult, JobView, Page
from conveyor.http import wire
from conveyor.http.errors import ServerUnreachable, error_from_response, first_of_batch
from conveyor.http.wire import Accepted, Call, EventParser, JobRequest

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
#: An event stream sends a keep-alive comment every 15 s by default: wait longer than that.
EVENTS_READ_TIMEOUT_S = 60.0


def headers(token: str | None) -> dict[str, str]:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return {"Accept": "application/json", **auth}


def unreachable(base_url: str, exc: httpx.TransportError) -> ServerUnreachable:
    what = (
        "timed out" if isinstance(exc, httpx.TimeoutException) else str(exc) or type(exc).__name__
    )
    return ServerUnreachable(f"cannot reach the Conveyor API at {base_url}: {what}", url=base_url)


def failure(response: httpx.Response) -> ConveyorError:
    """The error an unsuccessful (and read) response names, as the Python client's class."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return first_of_batch(error_from_response(response.status_code, body, str(response.url)))


def answer(call: Call[T], response: httpx.Response) -> T:
    """The parsed answer, or the error the API named."""
    if response.is_success:
        return call.parse(response.json())
    raise failure(response)


class Client:
    """Enqueue, read, follow, cancel and retry jobs over HTTP; errors are the Python client's
    classes (``UnknownJobType``, ``InvalidPayload``, ``JobNotFound`` ...), plus
    ``Unauthorized``/``Forbidden`` for tokens and ``ServerUnreachable`` for the network."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers(token), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call[T]) -> T:
        try:
            response = self.http.request(call.method, call.path, json=call.json, params=call.params)
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from exc
        return answer(call, response)

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(
        self,
        job_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | str | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | str | None = None,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Enqueue one job by type name; the server validates the payload."""
        request = JobRequest(
            job_type, payload or {}, queue, delay, run_at, max_attempts, timeout, idempotency_key
        )
        return self._send(wire.enqueue(request))

    def enqueue_many(self, requests: Sequence[JobRequest]) -> list[Accepted]:
        """Enqueue up to 1,000 jobs in one transaction: all, or none (the first refused
        job's error is raised, its ``index`` in ``details``)."""
        return self._send(wire.enqueue_many(list(requests)))

    # -- read -------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobView:
        return self._send(wire.get(job_id))

    def list(
        self,
        *,
        state: State | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """One page of jobs, newest first; pass ``next_cursor`` back as ``cursor``."""
        filters = dict(state=state, type=type, queue=queue,
                       created_after=created_after, created_before=created_before)  # fmt: skip
        return self._send(wire.list_jobs(filters, cursor, limit))

    def pages(self, *, limit: int = 50, **filters: Any) -> Iterator[Page]:
        """Every page of a listing (the filters of ``list``), fetched as you iterate."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.list(cursor=cursor, limit=limit, **filters)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait(self, job_id: str, timeout: float | None = None, poll_s: float = 0.05) -> JobView:
        """Block until the job is terminal (polling, like the Python client's ``wait``);
        raises WaitTimeout after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll_s
        while True:
            view = self.get(job_id)
            if view.terminal:
                return view
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {job_id} is still {view.state.value} after {timeout} s", job_id=job_id
                )
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 1.5, 0.5)

    def events(
        self, job_id: str, *, read_timeout_s: float | None = EVENTS_READ_TIMEOUT_S
    ) -> Iterator[dict[str, Any]]:
        """The job's Server-Sent Events as dicts (``event``: ``state`` or ``progress``;
        ``state``, ``stage``, ``progress``, ``message``, ``attempt``; ``result`` and
        ``error`` once terminal), from its current state until it is terminal."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout_s)
        path = wire.job_path(job_id, "events")
        parser = EventParser()
        try:
            with self.http.stream("GET", path, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    raise failure(response)
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from exc

    # -- change -----------------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobView:
        """Cancel: a waiting job at once, a running one by telling its worker."""
        return self._send(wire.cancel(job_id))

    def retry(self, job_id: str) -> JobView:
        """Run a failed or canceled job again."""
        return self._send(wire.retry(job_id))

    def bulk(
        self,
        action: BulkAction | str,
        *,
        everything: bool = False,
        cursor: str | None = None,
        **filters: Any,
    ) -> BulkResult:
        """Retry, cancel or delete every job the filters (those of ``list``) match; cancel
        and delete refuse an empty filter unless ``everything``. With ``more`` set, call
        again with ``cursor``."""
        return self._send(wire.bulk(action, filters, everything, cursor))
