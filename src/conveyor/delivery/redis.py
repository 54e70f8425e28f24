"""Redis delivery: a worker reads job ids from Redis streams, claims them in the database,
then acknowledges them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from conveyor import faults
from conveyor.core.shares import Shares
from conveyor.dispatch.base import Delivery
from conveyor.dispatch.redis import RedisDispatcher
from conveyor.store import ClaimedJob, ClaimStore

#: How long an id delivered before its enqueue committed is retried before it is dropped.
UNSEEN_GRACE_S = 10.0


class RedisSource:
    """Reads job ids from Redis streams, claims them in the database, then acknowledges."""

    def __init__(
        self,
        claims: ClaimStore,
        dispatcher: RedisDispatcher,
        worker_id: str,
        lease_s: float,
        now: Callable[[], datetime],
        clock: Callable[[], float] = time.monotonic,
        idle_s: float = 1.0,
    ) -> None:
        """``now``: the database's time (``store.clock.DbClock.now``), which leases are on;
        ``idle_s``: how long an idle claim blocks on Redis for a delivery."""
        self.idle_s = idle_s
        self.claims = claims
        self.dispatcher = dispatcher
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.now = now
        self.clock = clock
        self._spare: list[Delivery] = []  # fetched beyond free slots, not yet claimed
        self._unseen: dict[str, tuple[Delivery, float]] = {}  # id -> (delivery, first seen)
        self._unacked: list[Delivery] = []  # claimed (or stale) deliveries not yet acknowledged
        self._caught_up = False  # the last fetch found fewer ids than it asked for

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
            claimed = self.claims.claim_ids(list(by_id), self.worker_id, self.now(), self.lease_s)
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
        if self._caught_up and block_s > 0:
            # Nothing was left last time: one blocking read over every queue, which returns
            # at once if ids came meanwhile (shares matter only while there is a backlog).
            got = self.dispatcher.fetch({q: need for q in shares.weights}, block_s)
            self._caught_up = len(got) < need
            return got
        got = self.dispatcher.fetch(shares.allocate(need), 0)
        for queue in shares.fallback_order():
            if len(got) >= need:
                break
            got += self.dispatcher.fetch({queue: need - len(got)}, 0)
        self._caught_up = len(got) < need
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
        exists = self.claims.existing([d.job_id for d in missing])
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
