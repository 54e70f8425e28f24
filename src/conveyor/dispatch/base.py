"""The dispatch ports: how committed jobs reach workers at once, and how event streams hear
that a job changed. Adapters move job ids; the store decides what they mean.

Under database dispatch there is nothing to hand off (workers claim from the jobs table, and
PostgreSQL's NOTIFY wakes them from the enqueue's own statement): ``NO_HANDOFF`` stands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)  # not frozen: made per job, and a frozen init costs 5x
class Delivery:
    queue: str
    job_id: str
    token: str  # adapter-specific handle used to acknowledge the delivery


class Handoff(Protocol):
    """Hands (queue, job id) pairs of committed queued jobs to workers. Losing one is
    allowed: the reconciler feeds again what the database holds."""

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        """Make the pairs available to workers, in one round trip."""


class Events(Protocol):
    """Job-change notices for event streams; best effort."""

    def publish(self, job_ids: Sequence[str]) -> None:
        """Tell listeners that these jobs changed."""

    def may_have_listeners(self) -> bool:
        """False when publishing is known to reach no one just now (answered without I/O:
        callers skip the hand-off to an I/O thread)."""


class _NoHandoff:
    """Database dispatch: workers find committed jobs in the table themselves."""

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        return None


class _NoEvents:
    """SQLite without Redis: nobody can listen; event streams poll."""

    def publish(self, job_ids: Sequence[str]) -> None:
        return None

    def may_have_listeners(self) -> bool:
        return False


NO_HANDOFF: Handoff = _NoHandoff()
NO_EVENTS: Events = _NoEvents()
