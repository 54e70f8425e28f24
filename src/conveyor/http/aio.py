"""``conveyor.http.AsyncClient``: ``Client``'s twin for an event loop, call for call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from conveyor.core.errors import WaitTimeout
from conveyor.core.states import State
from conveyor.core.views import BulkAction, BulkResult, JobView, Page
from conveyor.http import wire
from conveyor.http.sync import (
    DEFAULT_TIMEOUT_S,
    EVENTS_READ_TIMEOUT_S,
    answer,
    failure,
    headers,
    unreachable,
)
from conveyor.http.wire import Accepted, Call, EventParser, JobRequest

T = TypeVar("T")


class AsyncClient:
    """The async ``Client``: the same methods, awaited; ``events`` and ``pages`` are async
    iterators."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers(token), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self.http.request(
                call.method, call.path, json=call.json, params=call.params
            )
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from exc
        return answer(call, response)

    async def enqueue(
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
        request = JobRequest(
            job_type, payload or {}, queue, delay, run_at, max_attempts, timeout, idempotency_key
        )
        return await self._send(wire.enqueue(request))

    async def enqueue_many(self, requests: Sequence[JobRequest]) -> list[Accepted]:
        return await self._send(wire.enqueue_many(list(requests)))

    async def get(self, job_id: str) -> JobView:
        return await self._send(wire.get(job_id))

    async def list(
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
        filters = dict(state=state, type=type, queue=queue,
                       created_after=created_after, created_before=created_before)  # fmt: skip
        return await self._send(wire.list_jobs(filters, cursor, limit))

    async def pages(self, *, limit: int = 50, **filters: Any) -> AsyncIterator[Page]:
        cursor = filters.pop("cursor", None)
        while True:
            page = await self.list(cursor=cursor, limit=limit, **filters)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait(
        self, job_id: str, timeout: float | None = None, poll_s: float = 0.05
    ) -> JobView:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = poll_s
        while True:
            view = await self.get(job_id)
            if view.terminal:
                return view
            if deadline is not None and loop.time() >= deadline:
                raise WaitTimeout(
                    f"job {job_id} is still {view.state.value} after {timeout} s", job_id=job_id
                )
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 1.5, 0.5)

    async def events(
        self, job_id: str, *, read_timeout_s: float | None = EVENTS_READ_TIMEOUT_S
    ) -> AsyncIterator[dict[str, Any]]:
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout_s)
        path = wire.job_path(job_id, "events")
        parser = EventParser()
        try:
            async with self.http.stream("GET", path, timeout=timeout) as response:
                if not response.is_success:
                    await response.aread()
                    raise failure(response)
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise unreachable(self.base_url, exc) from exc

    async def cancel(self, job_id: str) -> JobView:
        return await self._send(wire.cancel(job_id))

    async def retry(self, job_id: str) -> JobView:
        return await self._send(wire.retry(job_id))

    async def bulk(
        self,
        action: BulkAction | str,
        *,
        everything: bool = False,
        cursor: str | None = None,
        **filters: Any,
    ) -> BulkResult:
        return await self._send(wire.bulk(action, filters, everything, cursor))
