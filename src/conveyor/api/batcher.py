"""Group commit for POST /jobs: requests that arrive together are written together.

While one batch is being written, the next one gathers; no request waits on a timer.
Each request still gets its own answer (its job, or why it was refused), only after
its job is committed.
"""

from __future__ import annotations

import asyncio
import sys

from conveyor.client import Client, EnqueueRequest
from conveyor.core.errors import ConveyorError, DatabaseUnavailable
from conveyor.store import Inserted

MAX_BATCH = 500

Pending = tuple[EnqueueRequest, asyncio.Future[Inserted]]


class EnqueueBatcher:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._pending: list[Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, request: EnqueueRequest) -> Inserted:
        future: asyncio.Future[Inserted] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._write(batch)

    async def _write(self, batch: list[Pending]) -> None:
        try:
            results = await asyncio.to_thread(
                self.client.enqueue_each, [request for request, _ in batch]
            )
        except DatabaseUnavailable as exc:  # nothing was written, and nothing could be
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception:
            # Something in one request that validation did not catch failed the shared
            # transaction: write them one by one so only that request fails.
            if len(batch) > 1:
                for one in batch:
                    await self._write([one])
                return
            if not batch[0][1].done():
                batch[0][1].set_exception(sys.exc_info()[1] or RuntimeError("enqueue failed"))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(result, ConveyorError):
                future.set_exception(result)
            else:
                future.set_result(result)
