"""Database delivery: a worker claims straight from the jobs table, woken on PostgreSQL by
LISTEN (``store.notify.Waker``), on SQLite by a doorbell (``dispatch.doorbell``), and polling
as a safety net."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from conveyor.core.shares import Shares
from conveyor.store import ClaimedJob, ClaimStore


class Wakeup(Protocol):
    """What ends an idle worker's wait early when a job of its queues becomes ready."""

    @property
    def idle_s(self) -> float | None:
        """How long an idle wait may last while this is up (None: the usual poll)."""
        ...

    #: This worker's queues named by the notices read since the source last looked (the
    #: source clears it): they are claimed at once, resting or not.
    named: set[str]

    def listen(self) -> None: ...

    def wait(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...


#: How long a claim cursor is followed before claims scan a queue from its start again.
CURSOR_S = 1.0
#: How long a queue whose claim found nothing is left out of a busy worker's claims (unless a
#: wake-up says something was enqueued): a worker serving an idle queue beside a busy one (the
#: built-in ``conveyor.webhooks``, say) would otherwise spend a statement on it every claim.
EMPTY_REST_S = 0.02


class DatabaseSource:
    """Claims straight from the jobs table (FOR UPDATE SKIP LOCKED on PostgreSQL).

    While a queue has a backlog, each claim continues after the last id this worker claimed
    there: a claim from the start would step over every job claimed since the last vacuum
    (their index entries stay until then, and the planner, with statistics from before the
    drain, may walk the primary key past them). The cursor is dropped, and the next claim
    starts from the oldest queued job again, when a claim comes back short (the backlog after
    it is used up: the rest is claimed from the start at once) or after ``CURSOR_S``, so a job
    queued again with an older id (a retry) waits at most that long to be seen.
    """

    def __init__(
        self,
        claims: ClaimStore,
        worker_id: str,
        lease_s: float,
        now: Callable[[], datetime],
        clock: Callable[[], float] = time.monotonic,
        waker: Wakeup | None = None,
        idle_s: float = 1.0,
    ) -> None:
        """``now``: the database's time (``store.clock.DbClock.now``), which leases are on;
        ``idle_s``: how long an idle claim waits (the poll interval)."""
        self.idle_s = idle_s
        self.claims = claims
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.now = now
        self.clock = clock
        self.waker = waker  # an idle wait ends early when a job is enqueued
        self._cursors: dict[str, tuple[str, float]] = {}  # queue -> (last id claimed, since)
        self._empty: dict[str, float] = {}  # queue -> when a claim of it last found nothing

    def claim(self, shares: Shares, free: int, block_s: float) -> list[ClaimedJob]:
        if self.waker is not None:
            self.waker.listen()
            for queue in self.waker.named:  # something was enqueued there: no rest
                self._empty.pop(queue, None)
            self.waker.named.clear()
        now = self.clock()
        resting = {q for q, at in self._empty.items() if now - at < EMPTY_REST_S}
        counts = _without(shares.allocate(free), resting, shares.fallback_order())
        claimed = self._claim(counts) if counts else []
        for queue in shares.fallback_order():
            if len(claimed) >= free:
                break
            if queue not in resting:
                claimed += self._claim({queue: free - len(claimed)})
        waker = self.waker
        if not claimed and block_s > 0:
            woken = False
            if waker is not None:
                woken = waker.wait(waker.idle_s or block_s)
            else:
                time.sleep(block_s)
            if self.waker is None:
                self._empty.clear()  # the poll's time is up
            if (
                woken and waker is not None
            ):  # claim what woke it now, not after a round through the event loop:
                # the queues the notices named, one statement, the others resting (a notice
                # or the poll brings them back)
                now = self.clock()
                for queue in shares.weights:
                    if queue not in waker.named:
                        self._empty[queue] = now
                claimed = self.claim(shares, free, 0)
        return claimed

    def _claim(self, counts: dict[str, int]) -> list[ClaimedJob]:
        now = self.clock()
        after = {
            q: last
            for q, (last, since) in self._cursors.items()
            if q in counts and now - since < CURSOR_S
        }
        claimed = self.claims.claim_next(counts, self.worker_id, self.now(), self.lease_s, after)
        rest: dict[str, int] = {}
        for queue, count in counts.items():
            got = [j.id for j in claimed if j.queue == queue]
            if count > 0 and not got and queue not in after:
                self._empty[queue] = now
            else:
                self._empty.pop(queue, None)
            if count > 0 and len(got) >= count:
                since = self._cursors[queue][1] if queue in after else now
                self._cursors[queue] = (max(got), since)
                continue
            self._cursors.pop(queue, None)
            if queue in after:
                rest[queue] = count - len(got)
        if rest:
            claimed += self.claims.claim_next(rest, self.worker_id, self.now(), self.lease_s)
        return claimed

    def release(self) -> None:
        if self.waker is not None:
            self.waker.close()


def _without(counts: dict[str, int], resting: set[str], order: list[str]) -> dict[str, int]:
    """``counts`` without the resting queues, their slots given to the first other queue in
    ``order``: one claim statement for them all, not a second round for the slots left."""
    if not resting:
        return counts
    spare = sum(n for q, n in counts.items() if q in resting)
    kept = {q: n for q, n in counts.items() if q not in resting}
    heir = next((q for q in order if q in kept), None)
    if heir is not None and spare:
        kept[heir] += spare
    return kept
