"""Depth gauges: each queue's queued and running jobs, recorded once a minute for the
history's charts (``conveyor_minutes``)."""

from __future__ import annotations

from datetime import datetime

from conveyor.core.metrics import minute_of
from conveyor.store.stats import StatsStore


class DepthGauge:
    """Records the depths at the first pass of each minute. A new leader may record a minute
    its predecessor recorded already: the gauges are set, not added, so that is harmless."""

    def __init__(self, stats: StatsStore) -> None:
        self.stats = stats
        self._recorded: datetime | None = None  # the last minute recorded by this process

    def due(self, now: datetime) -> bool:
        """Whether ``now``'s minute is still to record (no I/O)."""
        return minute_of(now) != self._recorded

    def run_once(self, now: datetime) -> int:
        """Record ``now``'s minute unless done already; returns how many queues it recorded."""
        minute = minute_of(now)
        if minute == self._recorded:
            return 0
        recorded = self.stats.record_depths(now)
        self._recorded = minute
        return recorded
