"""PostgreSQL LISTEN/NOTIFY: new jobs wake idle database-dispatch workers (``WAKE_CHANNEL``,
``Waker``), and job changes wake the API's event streams (``EVENTS_CHANNEL``,
``NotifyEvents``, ``pg_job_changes``).

Job-change notices go out only while someone listens: PostgreSQL cannot tell who listens on
a channel, so each listener holds a row in the leases table (``listen:<uuid>``, renewed
every few seconds) and publishers look for one at most once a second. A NOTIFY is a
transaction of its own that serialises with every other notifying commit; a worker draining
a backlog with no API stream open skips it entirely.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Engine

from conveyor.store import pg
from conveyor.store.leases import ANY_LISTENER, DROP_LISTENER, HOLD_LISTENER

log = logging.getLogger("conveyor.dispatch")

#: Idle workers LISTEN here; an enqueue that commits queued jobs NOTIFYs each of their queues.
WAKE_CHANNEL = "conveyor_wake"
#: Event streams LISTEN here for the ids of jobs that changed, comma-separated.
EVENTS_CHANNEL = "conveyor_events"
WAKER_RETRY_S = 5.0  # after a lost LISTEN connection, poll alone this long before reconnecting
NOTIFY_PAYLOAD_BYTES = 7900  # PostgreSQL's limit is 8000
LISTENER_PREFIX = "listen:"
LISTENER_TTL_S = 30.0  # a listener's lease; renewed every third of it
LISTENER_CHECK_S = 1.0  # how often publishers look for listeners


class NotifyEvents:
    """Job-change notices on ``EVENTS_CHANNEL``, sent only while an event stream listens."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.notifies = engine.dialect.name == "postgresql"
        self._listeners = False
        self._listeners_checked = -LISTENER_CHECK_S

    def publish(self, job_ids: Sequence[str]) -> None:
        if not self.notifies or not job_ids or not self._has_listeners():
            return
        with self.engine.begin() as conn:
            for payload in _payloads(job_ids):
                conn.execute(pg.NOTIFY, {"channel": EVENTS_CHANNEL, "payload": payload})

    def may_have_listeners(self) -> bool:
        fresh = time.monotonic() - self._listeners_checked < LISTENER_CHECK_S
        return self.notifies and (self._listeners or not fresh)

    def _has_listeners(self) -> bool:
        """Whether an event stream holds a listener lease; asked at most once a second."""
        now = time.monotonic()
        if now - self._listeners_checked >= LISTENER_CHECK_S:
            with self.engine.connect() as conn:
                found = conn.execute(ANY_LISTENER, {"prefix": LISTENER_PREFIX}).scalar()
            self._listeners = bool(found)
            self._listeners_checked = now
        return self._listeners


def _payloads(job_ids: Sequence[str]) -> list[str]:
    """Comma-separated ids, split to fit NOTIFY's payload limit."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for job_id in job_ids:
        if current and size + len(job_id) + 1 > NOTIFY_PAYLOAD_BYTES:
            out.append(",".join(current))
            current, size = [], 0
        current.append(job_id)
        size += len(job_id) + 1
    if current:
        out.append(",".join(current))
    return out


async def pg_job_changes(url: str) -> AsyncIterator[str]:
    """Ids of jobs as they change, from LISTEN on ``EVENTS_CHANNEL``, until the connection
    fails (the caller reconnects); holds a listener lease meanwhile so that publishers know
    someone listens."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5)
    lease = f"{LISTENER_PREFIX}{uuid.uuid4().hex}"
    try:
        await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
        while True:
            await conn.execute(HOLD_LISTENER, (lease, LISTENER_TTL_S))
            async for notice in conn.notifies(timeout=LISTENER_TTL_S / 3):
                for job_id in notice.payload.split(","):
                    if job_id:
                        yield job_id
    finally:
        with contextlib.suppress(Exception):
            await conn.execute(DROP_LISTENER, (lease,))
        await conn.close()


class Waker:
    """Where an idle database-dispatch worker waits for new jobs on PostgreSQL: a connection
    of its own that LISTENs on ``WAKE_CHANNEL``, so a job committed as queued starts at once
    instead of at the next poll. The poll stays: it finds what no notice announced (retries
    and scheduled jobs come due, enqueues from older clients), and it is all there is while
    the connection is down (reconnected at most every ``WAKER_RETRY_S``).

    Notices that arrive while the worker is busy are read and dropped before its next claim
    (``listen``), which covers their jobs; only those that arrive after it end a ``wait``.
    """

    def __init__(
        self,
        engine: Engine,
        queues: Iterable[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        # Not every way a job becomes ready notifies (promotions of due jobs, retries by
        # other clients), so the idle wait stays the worker's poll.
        self.idle_s: float | None = None
        self.queues = set(queues)
        self.clock = clock
        self._conn: Any = None
        self._down_since: float | None = None
        #: This worker's queues named by notices read since the source last looked.
        self.named: set[str] = set()

    def listen(self) -> None:
        """LISTEN from now on (connecting if needed): called before each claim, so that a job
        committed after a claim that found nothing wakes the wait that follows it.

        Notices already received are read and dropped: the claim that follows covers their
        jobs. A worker busy for hours would otherwise leave them unread, and PostgreSQL keeps
        every notice until each listener has read it (its queue fills, then NOTIFY fails).
        The queues they named are kept in ``named`` for the source."""
        conn = self._connection()
        if conn is None:
            return
        try:
            for notice in conn.notifies(timeout=0):
                if notice.payload in self.queues:
                    self.named.add(notice.payload)
        except Exception as exc:
            self._lost(exc)

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s``; True when a notice named one of this worker's queues."""
        deadline = self.clock() + timeout_s
        conn = self._connection()
        if conn is None:
            time.sleep(timeout_s)
            return False
        try:
            while (left := deadline - self.clock()) > 0:
                for notice in conn.notifies(timeout=left, stop_after=1):
                    if notice.payload in self.queues:
                        self.named.add(notice.payload)
                        return True
        except Exception as exc:
            self._lost(exc)
            time.sleep(max(0.0, deadline - self.clock()))
        return False

    def _connection(self) -> Any:
        if self._conn is not None:
            return self._conn
        if self._down_since is not None and self.clock() - self._down_since < WAKER_RETRY_S:
            return None
        import psycopg

        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
            conn.execute(f"LISTEN {WAKE_CHANNEL}")
        except Exception as exc:
            log.warning("cannot LISTEN for new jobs (%s); polling", exc)
            self._down_since = self.clock()
            return None
        self._conn, self._down_since = conn, None
        return conn

    def _lost(self, exc: Exception) -> None:
        log.warning("lost the LISTEN connection (%s); polling until it is back", exc)
        self.close()
        self._down_since = self.clock()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("closing the LISTEN connection failed: %s", exc)
