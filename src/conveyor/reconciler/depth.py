"""Depth gauges: each queue's queued and running jobs, recorded once a minute for the
history's charts (``conveyor_minutes``); and a warning for each queue whose jobs wait with no
live worker serving it."""

from __future__ import annotations

import logging
from datetime import datetime

from conveyor.core.metrics import minute_of
from conveyor.core.states import State
from conveyor.store.stats import StatsStore
from conveyor.store.workers import WorkerStore, alive_since

log = logging.getLogger("conveyor.maintenance")


class DepthGauge:
    """Records the depths at the first pass of each minute. A new leader may record a minute
    its predecessor recorded already: the gauges are set, not added, so that is harmless.
    With ``workers``, it then warns of each queue with queued jobs that no live worker
    serves (a typo in a queue name, a worker started without ``--queues``)."""

    def __init__(
        self, stats: StatsStore, workers: WorkerStore | None = None, heartbeat_s: float = 10.0
    ) -> None:
        self.stats = stats
        self.workers = workers
        self.heartbeat_s = heartbeat_s
        self._recorded: datetime | None = None  # the last minute recorded by this process

    def due(self, now: datetime) -> bool:
        """Whether ``now``'s minute is still to record (no I/O)."""
        return minute_of(now) != self._recorded

    def run_once(self, now: datetime) -> int:
        """Record ``now``'s minute unless done already; returns how many queues it recorded."""
        minute = minute_of(now)
        if minute == self._recorded:
            return 0
        depths = self.stats.record_depths(now)
        self._recorded = minute
        if self.workers is not None:
            self._warn_unserved(depths, now)
        return len(depths)

    def _warn_unserved(self, depths: dict[str, dict[State, int]], now: datetime) -> None:
        waiting = {q: counts[State.QUEUED] for q, counts in depths.items() if counts[State.QUEUED]}
        if not waiting:
            return
        serving = (
            self.workers.serving(alive_since(now, self.heartbeat_s)) if self.workers else set()
        )
        for queue in sorted(set(waiting) - serving):
            log.warning(
                "queue %s has %d queued jobs and no live worker serves it "
                "(start one with --queues %s)",
                queue,
                waiting[queue],
                queue,
            )
