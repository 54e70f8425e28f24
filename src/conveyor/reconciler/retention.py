"""Retention: finished jobs are deleted, with their attempts, once past their keep time."""

from __future__ import annotations

from datetime import datetime, timedelta

from conveyor.core.states import State
from conveyor.store import UpkeepStore

#: Jobs deleted per statement: a pass goes on while a batch comes back full.
BATCH = 1000


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
