"""Whether a worker can make progress, and what it does when it cannot.

Two things stop a worker without killing it. A sync handler that ignores its timeout or
cancel keeps its thread (Python cannot stop a thread): each such thread holds one of the
worker's slots until it returns. And an async handler that computes or sleeps without
awaiting blocks the event loop: no other job, heartbeat or write runs meanwhile.

The policy (docs/guarantees.md): a worker claims only for slots no such thread holds; it
reports the problem in its heartbeat (``/workers``) and its log; when stuck threads hold half
its slots or more it drains and replaces itself (``replace_reason``); and when its loop stays
blocked for two leases (its jobs have been recovered elsewhere by then) the watchdog thread
replaces the process at once through ``on_wedged``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from conveyor.worker.context import Context

log = logging.getLogger("conveyor.worker")

#: How often the event loop proves it is alive, and how long a silence counts as blocked.
TICK_S = 0.25
STALL_S = 2.0
#: How often the watchdog thread looks.
WATCH_S = 0.5
#: How long a stall stays reported after the loop is free again.
REPORT_STALL_S = 60.0


class Health:
    def __init__(
        self,
        concurrency: int,
        wedged_after_s: float,
        running: Callable[[], list[str]],
        on_wedged: Callable[[str], None] | None = None,
    ) -> None:
        """``running`` describes the running jobs (for the log); ``on_wedged`` replaces the
        process (None: only log, as when a worker runs inside a test)."""
        self.concurrency = concurrency
        self.wedged_after_s = wedged_after_s
        self.running = running
        self.on_wedged = on_wedged
        self._stuck: list[Context] = []
        self._last_tick = self._watch_seen = time.monotonic()
        self._stall: tuple[float, str] | None = None  # (when it ended, what it was)
        self.replace_reason: str | None = None
        self._watch: threading.Thread | None = None
        self._closed = threading.Event()

    # -- threads that outlived their attempt ------------------------------------------------

    def ended(self, ctx: Context) -> None:
        """An attempt ended; if its handler's thread still runs, that thread is stuck."""
        if ctx.in_thread:
            self._stuck.append(ctx)
            log.warning(
                "job %s (%s): its thread is still running after the attempt ended "
                "(%s); it holds a slot until it returns",
                ctx.job_id,
                ctx.job_type,
                ctx.cancel_reason or "ended",
            )

    def stuck(self) -> int:
        """Threads still running handlers whose attempt has ended."""
        if self._stuck:
            self._stuck = [ctx for ctx in self._stuck if ctx.in_thread]
        return len(self._stuck)

    def starved(self) -> bool:
        """Stuck threads hold half the slots or more: time to replace the process."""
        return self.stuck() >= max(1, math.ceil(self.concurrency / 2))

    # -- the event loop ---------------------------------------------------------------------

    def tick(self) -> None:
        """Called by the event loop every TICK_S: a late tick means the loop was blocked,
        unless the watchdog thread was silent as long (the whole process was paused: SIGSTOP,
        a suspended host)."""
        now = time.monotonic()
        silent = now - self._last_tick
        self._last_tick = now
        if silent > STALL_S and now - self._watch_seen < STALL_S:
            what = f"the event loop was blocked for {silent:.1f} s"
            self._stall = (now, f"{what} (until {datetime.now(UTC):%H:%M:%S} UTC)")
            log.warning("%s: an async handler ran without awaiting", what)

    def start_watch(self) -> None:
        """A daemon thread that notices a blocked loop while it is still blocked."""
        self._last_tick = self._watch_seen = time.monotonic()
        self._watch = threading.Thread(target=self._watch_loop, name="conveyor-watch", daemon=True)
        self._watch.start()

    def stop_watch(self) -> None:
        self._closed.set()

    def _watch_loop(self) -> None:
        warned = False
        while not self._closed.wait(WATCH_S):
            now = time.monotonic()
            paused = now - self._watch_seen > STALL_S  # this thread was stopped too
            self._watch_seen = now
            if paused:
                self._last_tick = now  # the loop was not to blame: count from here
                continue
            silent = now - self._last_tick
            if silent <= STALL_S:
                warned = False
                continue
            if not warned:
                warned = True
                log.warning(
                    "the event loop has been blocked for %.1f s; running: %s",
                    silent,
                    ", ".join(self.running()) or "nothing",
                )
            if silent > self.wedged_after_s:
                reason = f"the event loop was blocked for {silent:.0f} s"
                log.error("%s; replacing this worker process", reason)
                if self.on_wedged is not None:
                    self.on_wedged(reason)
                return

    # -- the report -------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why this worker cannot make full progress, for its heartbeat; None when healthy."""
        problems = []
        stuck = self.stuck()
        if stuck:
            problems.append(
                f"{stuck} of {self.concurrency} slots held by threads that outlived their "
                "attempt (a sync handler ignoring its timeout or cancel)"
            )
        if self._stall is not None and time.monotonic() - self._stall[0] < REPORT_STALL_S:
            problems.append(self._stall[1])
        if self.replace_reason:
            problems.append(f"replacing itself: {self.replace_reason}")
        return "; ".join(problems) or None
