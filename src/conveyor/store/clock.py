"""The database's clock: every time Conveyor writes to the database or compares there (leases,
heartbeats, due times, schedule ticks, retention) is on it, never on a host's own clock.

A host whose clock is minutes off would otherwise write leases that expire at once or far too
late, as another process judges them. ``DbClock`` reads the database's time without a round
trip per call: it measures it (to half a round trip), carries it forward on this process's
monotonic clock, and measures again every ``sync_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("conveyor.clock")

#: How often a clock that measures itself on use re-measures the database's time.
SYNC_S = 30.0
#: A host clock this far from the database's is reported once (it is harmless, but telling).
SKEW_WARNING_S = 5.0


def db_now(conn: Connection) -> datetime:
    """The database's time now, read in one statement."""
    if conn.dialect.name == "postgresql":
        value: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)
    raw = conn.execute(text("SELECT strftime('%Y-%m-%dT%H:%M:%f', 'now')")).scalar_one()
    return datetime.fromisoformat(raw).replace(tzinfo=UTC)


class DbClock:
    """The database's time as this process sees it (SQLite has no server: its clock is the
    host's). ``sync_s=None``: never measure on use, only through ``sync()`` — for an event
    loop, which must not wait on the database."""

    def __init__(self, engine: Engine, sync_s: float | None = SYNC_S) -> None:
        self.engine = engine
        # SQLite's time is this host's: it is read here, not in a statement, which would take
        # the write lock (every SQLite transaction does) and wait on a caller's transaction.
        self.measures = engine.dialect.name == "postgresql"
        self.sync_s = sync_s
        self._base: datetime | None = None
        self._at = 0.0  # the monotonic time of _base
        self._tried = -float("inf")  # when a measurement was last attempted on use
        self._lock = threading.Lock()
        self._warned = False
        self._last = datetime.min.replace(tzinfo=UTC)  # the latest time handed out

    def now(self) -> datetime:
        """The database's time now; before the first measurement, this host's. Never earlier
        than a time it returned before: a new measurement that lands behind the carried one
        (the server's or the host's clock stepped back) holds until time catches up, so a job
        promoted at one reading is never claimed at an earlier one."""
        base, at, sync_s = self._base, self._at, self.sync_s
        due = sync_s is not None and time.monotonic() - self._tried > sync_s
        if due and (base is None or time.monotonic() - at > (sync_s or 0.0)):
            self._tried = time.monotonic()  # a failed measurement is not retried at once
            try:
                self.sync()
            except Exception as exc:  # keep carrying the last measurement forward
                log.debug("could not read the database's clock: %s", exc)
            base, at = self._base, self._at
        value = (
            datetime.now(UTC) if base is None else base + timedelta(seconds=time.monotonic() - at)
        )
        if value < self._last:
            return self._last
        self._last = value
        return value

    def sync(self) -> None:
        """Measure the database's time again (one round trip; on SQLite, this host's clock).
        Between measurements it is carried on the monotonic clock, so a step of the host's
        clock never makes this process's times run backwards."""
        if not self.measures:
            measured, at = datetime.now(UTC), time.monotonic()
            with self._lock:
                self._base, self._at = measured, at
            return
        with self.engine.connect() as conn:
            before = time.monotonic()
            measured = db_now(conn)
            after = time.monotonic()
        with self._lock:
            self._base, self._at = measured, (before + after) / 2
        skew_s = (datetime.now(UTC) - measured).total_seconds()
        if abs(skew_s) > SKEW_WARNING_S and not self._warned:
            self._warned = True
            log.warning(
                "this host's clock is %+.1f s off the database's; Conveyor uses the database's",
                skew_s,
            )
