"""The threads plain ``def`` handlers run on, handing results back to the event loop in
batches.

``loop.run_in_executor`` costs a sync job about three times what an ``async def`` one costs
in the loop: a ``concurrent.futures.Future`` with its lock, a wrapping asyncio future, and a
wake-up of the loop (a write to its self-pipe) per job. Here a thread that ends a handler
appends the result to a list and wakes the loop only when no wake-up is pending: while the
loop is busy, many results cost one wake-up and one callback that resolves them all.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

_STOP = None


class JobThreads:
    """Up to ``max_threads`` threads running calls for one event loop (its thread only
    submits). Threads start as calls need them and stay for the process's life."""

    def __init__(self, max_threads: int, name: str = "conveyor-job") -> None:
        self.max_threads = max_threads
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._calls = queue.SimpleQueue()
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._wake_pending = False
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``call`` on a thread; its result (or exception) resolves the future returned.
        A future cancelled meanwhile (the attempt timed out) is left alone."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((call, future))
        if not self._idle.acquire(blocking=False) and len(self._threads) < self.max_threads:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return future

    def shutdown(self) -> None:
        """Let idle threads end (a thread still in a handler ends when it returns)."""
        for _ in self._threads:
            self._calls.put(_STOP)

    def _work(self) -> None:
        calls, done = self._calls, self._done
        while True:
            item = calls.get()
            if item is _STOP:
                return
            call, future = item
            try:
                done.append((future, call(), None))
            except BaseException as exc:  # the handler's, whatever it is: its attempt's error
                done.append((future, None, exc))
            del item, call, future  # hold no reference while idle
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self._loop.call_soon_threadsafe(self._resolve)  # type: ignore[union-attr]
                except RuntimeError:  # the loop is closed: the worker is gone
                    return
            self._idle.release()

    def _resolve(self) -> None:
        """In the loop: resolve every finished call's future. The flag drops first, so a
        result appended after this drain schedules another."""
        self._wake_pending = False
        done = self._done
        while done:
            future, result, exc = done.popleft()
            if future.cancelled():
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
