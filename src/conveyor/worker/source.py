"""Where a worker's next jobs come from: Redis deliveries claimed in the database, or the
database alone. Both run in the worker's I/O threads and return claimed jobs."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from conveyor import faults
from conveyor.core.shares import Shares
from conveyor.dispatch.base import Delivery, Dispatcher
from conveyor.dispatch.database import Waker
from conveyor.store import ClaimedJob, RunStore

#: How long an id delivered before its enqueue committed is retried before it is dropped.
UNSEEN_GRACE_S = 10.0


#: How long a claim cursor is followed before claims scan a queue from its start again.
CURSOR_S = 1.0


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
        runs: RunStore,
        worker_id: str,
        lease_s: float,
        now: Callable[[], datetime],
        clock: Callable[[], float] = time.monotonic,
        waker: Waker | None = None,
    ) -> None:
        """``now``: the database's time (``store.clock.DbClock.now``), which leases are on."""
        self.runs = runs
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.now = now
        self.clock = clock
        self.waker = waker  # PostgreSQL: an idle wait ends early when a job is enqueued
        self._cursors: dict[str, tuple[str, float]] = {}  # queue -> (last id claimed, since)

    def claim(self, shares: Shares, free: int, block_s: float) -> list[ClaimedJob]:
        if self.waker is not None:
            self.waker.listen()
        claimed = self._claim(shares.allocate(free))
        for queue in shares.fallback_order():
            if len(claimed) >= free:
                break
            claimed += self._claim({queue: free - len(claimed)})
        if not claimed and block_s > 0:
            if self.waker is not None:
                self.waker.wait(block_s)
            else:
                time.sleep(block_s)
        return claimed

    def _claim(self, counts: dict[str, int]) -> list[ClaimedJob]:
        now = self.clock()
        after = {
            q: last
            for q, (last, since) in self._cursors.items()
            if q in counts and now - since < CURSOR_S
        }
        claimed = self.runs.claim_next(counts, self.worker_id, self.now(), self.lease_s, after)
        rest: dict[str, int] = {}
        for queue, count in counts.items():
            got = [j.id for j in claimed if j.queue == queue]
            if count > 0 and len(got) >= count:
                since = self._cursors[queue][1] if queue in after else now
                self._cursors[queue] = (max(got), since)
                continue
            self._cursors.pop(queue, None)
            if queue in after:
                rest[queue] = count - len(got)
        if rest:
            claimed += self.runs.claim_next(rest, self.worker_id, self.now(), self.lease_s)
        return claimed

    def release(self) -> None:
        if self.waker is not None:
            self.waker.close()


class RedisSource:
    """Reads job ids from Redis streams, claims them in the database, then acknowledges."""

    def __init__(
        self,
        runs: RunStore,
        dispatcher: Dispatcher,
        worker_id: str,
        lease_s: float,
        now: Callable[[], datetime],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``now``: the database's time (``store.clock.DbClock.now``), which leases are on."""
        self.runs = runs
        self.dispatcher = dispatcher
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.now = now
        self.clock = clock
        self._spare: list[Delivery] = []  # fetched beyond free slots, not yet claimed
        self._unseen: dict[str, tuple[Delivery, float]] = {}  # id -> (delivery, first seen)
        self._unacked: list[Delivery] = []  # claimed (or stale) deliveries not yet acknowledged

    def claim(self, shares: Shares, free: int, block_s: float) -> list[ClaimedJob]:
        self._ack_settled()
        deliveries = self._take_spare(free) + self._due_unseen(free)
        need = free - len(deliveries)
        if need > 0:
            deliveries += self._fetch(shares, need, block_s if not deliveries else 0)
        if len(deliveries) > free:
            self._spare += deliveries[free:]
            deliveries = deliveries[:free]
        if not deliveries:
            return []
        faults.point("after_fetch")  # fetched, not claimed: for the XAUTOCLAIM fault test
        by_id = {d.job_id: d for d in deliveries}
        try:
            claimed = self.runs.claim_ids(list(by_id), self.worker_id, self.now(), self.lease_s)
        except BaseException:
            # The database is down: keep what was fetched for the next claim, rather than
            # leaving it pending in Redis for a lease (unseen ones are kept already).
            self._spare = [d for d in deliveries if d.job_id not in self._unseen] + self._spare
            raise
        claimed_ids = {j.id for j in claimed}
        done = [by_id[i] for i in claimed_ids]
        missing = [d for d in deliveries if d.job_id not in claimed_ids]
        if missing:
            done += self._sort_missing(missing)
        # Acknowledged on the next call, after the claimed jobs have started: the claim
        # itself is what makes them ours. An id left unacknowledged by a crash is handed out
        # again and its claim finds it no longer queued.
        self._unacked += done
        if not claimed and self._unseen:
            time.sleep(0.05)  # only not-yet-committed ids: do not spin on them
        return claimed

    def _ack_settled(self) -> None:
        if self._unacked:
            self.dispatcher.ack(self._unacked)
            self._unacked = []

    def _fetch(self, shares: Shares, need: int, block_s: float) -> list[Delivery]:
        got = self.dispatcher.fetch(shares.allocate(need), 0)
        for queue in shares.fallback_order():
            if len(got) >= need:
                break
            got += self.dispatcher.fetch({queue: need - len(got)}, 0)
        if not got and block_s > 0:
            got = self.dispatcher.fetch({q: need for q in shares.weights}, block_s)
        return got

    def _take_spare(self, free: int) -> list[Delivery]:
        taken, self._spare = self._spare[:free], self._spare[free:]
        return taken

    def _due_unseen(self, free: int) -> list[Delivery]:
        return [d for d, _ in list(self._unseen.values())[:free]]

    def _sort_missing(self, missing: list[Delivery]) -> list[Delivery]:
        """Deliveries that claimed nothing: stale ones are done; unseen ones wait a little."""
        exists = self.runs.existing([d.job_id for d in missing])
        done: list[Delivery] = []
        now = self.clock()
        for d in missing:
            first_seen = self._unseen.get(d.job_id, (d, now))[1]
            if d.job_id in exists or now - first_seen > UNSEEN_GRACE_S:
                self._unseen.pop(d.job_id, None)
                done.append(d)  # claimed elsewhere, canceled, or its enqueue rolled back
            else:
                self._unseen[d.job_id] = (d, first_seen)
        return done

    def release(self) -> None:
        """Hand fetched-but-unclaimed ids back to Redis before the worker stops."""
        self._ack_settled()
        left = self._spare + [d for d, _ in self._unseen.values()]
        self._spare, self._unseen = [], {}
        if left:
            self.dispatcher.push([(d.queue, d.job_id) for d in left])
            self.dispatcher.ack(left)
