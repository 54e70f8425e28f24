"""Delivery: where a worker's next jobs come from. A ``Source`` claims jobs in the database
— straight from the jobs table (``delivery.database``) or from the ids Redis hands out
(``delivery.redis``); ``Services.source`` picks one, once, for the process."""

from __future__ import annotations

from typing import Protocol

from conveyor.core.shares import Shares
from conveyor.store import ClaimedJob


class Source(Protocol):
    """Claims jobs for one worker process; called from one I/O thread at a time."""

    #: How long a claim that finds nothing waits for new work (the worker passes it back).
    idle_s: float

    def claim(self, shares: Shares, free: int, block_s: float) -> list[ClaimedJob]:
        """Claim up to ``free`` jobs across the queues by ``shares``; when none is
        claimable, wait up to ``block_s`` for one first."""

    def release(self) -> None:
        """Hand back what was fetched but not claimed; close what the source holds."""
