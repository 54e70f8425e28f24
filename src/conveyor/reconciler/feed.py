"""Stream feeding (Redis dispatch only): each queue's stream is kept fed from the database,
and what it lost is repaired.

Redis holds at most ``window`` ids per queue; the rest wait in the database. On every full
pass (each reconcile interval) the oldest queued jobs that the stream does not hold are
pushed: ids whose dispatch failed or whose enqueuer died after commit, and all of them after
Redis restarted empty. Between full passes, a stream below half its window is topped up from
where the last pass left off (the backlog, in id order), without reading the stream back.
Duplicates are harmless: a claim is conditional.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from conveyor.core.ids import id_floor
from conveyor.dispatch.base import Handoff
from conveyor.reconciler.promote import hand_off
from conveyor.store import UpkeepStore, WorkerStore
from conveyor.store.workers import alive_since

FEED_GRACE_S = 1.0  # jobs younger than this are left to their enqueuer, which pushes them
HELD_SLACK = 1000  # entries beyond the window a stream may hold (pushes that raced the check)


class Streams(Handoff, Protocol):
    """One stream of job ids per queue, read by workers (``RedisDispatcher``)."""

    def depth(self, queue: str) -> int:
        """Ids the stream holds: waiting, and delivered but not acknowledged."""

    def held(self, queue: str, limit: int) -> set[str]:
        """The job ids in the stream (at most ``limit`` entries looked at)."""

    def reclaim(self, queue: str, idle_s: float) -> int:
        """Hand out again what a consumer fetched but left unacknowledged for ``idle_s``."""


def served_queues(
    own: Sequence[str], workers: WorkerStore, heartbeat_s: float
) -> Callable[[datetime], list[str]]:
    """The queues to feed at a time: this process's and those of every worker alive then
    (heard from within three heartbeats); the leader feeds them all."""

    def served(now: datetime) -> list[str]:
        return sorted(set(own) | workers.serving(alive_since(now, heartbeat_s)))

    return served


class StreamFeeder:
    """Keeps the streams of ``served(now)`` fed; ``lease_s`` is how long a fetched but
    unclaimed delivery stays with the consumer that fetched it."""

    def __init__(
        self,
        upkeep: UpkeepStore,
        streams: Streams,
        served: Callable[[datetime], list[str]],
        window: int,
        lease_s: float,
    ) -> None:
        self.upkeep = upkeep
        self.streams = streams
        self.served = served
        self.window = window
        self.lease_s = lease_s
        # queue -> id up to which every queued job is known to be in its stream
        self._fed: dict[str, str] = {}

    def run_once(self, now: datetime, full: bool) -> int:
        """Feed every served queue once (``full``: reclaim and repair too); returns how many
        ids were pushed."""
        window = self.window
        before = now - timedelta(seconds=FEED_GRACE_S)
        pushed = 0
        for queue in self.served(now):
            if full:  # deliveries a dead worker fetched but never claimed: out again
                pushed += self.streams.reclaim(queue, self.lease_s)
            depth = self.streams.depth(queue)
            if depth >= window or (not full and depth >= window // 2):
                continue
            if full or queue not in self._fed:
                pushed += self._repair(queue, before, depth)
                continue
            more = self.upkeep.stale_queued(
                queue, before, limit=window - depth, after=self._fed[queue]
            )
            if more:
                hand_off(self.streams, [(queue, job_id) for job_id in more])
                self._fed[queue] = more[-1]
                pushed += len(more)
        return pushed

    def _repair(self, queue: str, before: datetime, depth: int) -> int:
        """Push the oldest queued ids the stream does not hold; remember how far every
        queued id is now in the stream, for the passes in between."""
        window = self.window
        held = self.streams.held(queue, window + HELD_SLACK)
        waiting = self.upkeep.stale_queued(queue, before, limit=window)
        missing = [job_id for job_id in waiting if job_id not in held][: window - depth]
        if missing:
            hand_off(self.streams, [(queue, job_id) for job_id in missing])
        covered, sent = None, set(missing)
        for job_id in waiting:
            if job_id not in held and job_id not in sent:
                break
            covered = job_id
        if len(waiting) < window and covered == (waiting[-1] if waiting else None):
            # Every queued job old enough is in the stream: later ones were created after
            # ``before`` (their enqueuer pushed them) and are fed from there if it could not.
            covered = max(covered or "", id_floor(int(before.timestamp() * 1000)))
        if covered is None:
            self._fed.pop(queue, None)
        else:
            self._fed[queue] = covered
        return len(missing)
