"""The dispatch port. Adapters move (queue, job id) pairs; the store decides what they mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)  # not frozen: made per job, and a frozen init costs 5x
class Delivery:
    queue: str
    job_id: str
    token: str  # adapter-specific handle used to acknowledge the delivery


class Dispatcher(Protocol):
    """Hands job ids to workers. Losing one is allowed: the reconciler re-dispatches."""

    #: False when workers must claim straight from the database instead of calling fetch().
    delivers: bool

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        """Make (queue, job id) pairs available to workers, in one round trip."""

    def fetch(self, counts: Mapping[str, int], block_s: float) -> list[Delivery]:
        """Up to ``counts[queue]`` deliveries per queue; waits up to ``block_s`` when idle."""

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Forget deliveries whose jobs were claimed in the database (or found stale)."""

    def depth(self, queue: str) -> int:
        """Ids the adapter holds for ``queue``: waiting and delivered-but-unacknowledged."""

    def held(self, queue: str, limit: int) -> set[str]:
        """Job ids the adapter holds for ``queue`` (at most ``limit`` looked at)."""

    def reclaim(self, queue: str, idle_s: float) -> int:
        """Make deliveries that a consumer fetched but never acknowledged (it died) for
        ``idle_s`` deliverable again; returns how many."""

    def publish(self, job_ids: Sequence[str]) -> None:
        """Tell listeners (event streams) that these jobs changed; best effort."""

    def may_have_listeners(self) -> bool:
        """False when publishing is known to reach no one just now (answered without I/O:
        callers skip the hand-off to an I/O thread)."""

    def close(self) -> None: ...
