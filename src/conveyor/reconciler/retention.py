"""Retention: finished jobs are deleted, with their attempts, once past their keep time; the
history's per-minute rows once a day old."""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.core.states import State
from conveyor.store import UpkeepStore
from conveyor.store.stats import StatsStore

#: Jobs deleted per statement: a pass goes on while a batch comes back full.
BATCH = 1000
#: How long the history's per-minute rows are kept.
MINUTES_KEPT = timedelta(hours=24)
#: Most minutes of history rows a pass deletes: a pass every reconcile interval catches up
#: ten minutes a time, while a minute's worth accrues each minute.
MINUTES_PER_PASS = 10


class Cleaner:
    """Deletes completed jobs ``completed_s`` after they finished, failed and canceled ones
    after ``failed_s`` (``0`` keeps them), at most ``batches`` batches per rule a pass."""

    def __init__(
        self, upkeep: UpkeepStore, completed_s: float, failed_s: float, batches: int = 10
    ) -> None:
        self.upkeep = upkeep
        self.rules = (
            ([State.COMPLETED], completed_s),
            ([State.FAILED, State.CANCELED], failed_s),
        )
        self.batches = batches

    def run_once(self, now: datetime) -> int:
        """Delete what is past its retention at ``now``; returns how many jobs."""
        deleted = 0
        for states, ttl_s in self.rules:
            if ttl_s <= 0:
                continue
            cut = now - timedelta(seconds=ttl_s)
            for _ in range(self.batches):
                n = self.upkeep.purge(states, cut, BATCH)
                deleted += n
                if n < BATCH:
                    break
        return deleted


class MinuteCleaner:
    """Deletes the history rows of minutes older than ``kept``, at most ``per_pass`` minutes
    of them a pass."""

    def __init__(
        self, stats: StatsStore, kept: timedelta = MINUTES_KEPT, per_pass: int = MINUTES_PER_PASS
    ) -> None:
        self.stats = stats
        self.kept = kept
        self.per_pass = per_pass

    def run_once(self, now: datetime) -> int:
        """Delete what is past its keep time at ``now``; returns how many rows."""
        return self.stats.purge_minutes(now - self.kept, self.per_pass)
