"""Weighted queue shares: smooth weighted round robin over claim slots."""

from __future__ import annotations

from collections.abc import Mapping


class Shares:
    """Splits claim slots between queues by weight, exactly over time, starving none.

    With ``strict`` every slot goes to the first queue (by weight, then order); the
    worker falls through to the next queue only when the first is empty.
    """

    def __init__(self, weights: Mapping[str, int], *, strict: bool = False) -> None:
        if not weights:
            raise ValueError("at least one queue is needed")
        self.weights = dict(weights)
        self.strict = strict
        self.order = (
            sorted(self.weights, key=lambda q: -self.weights[q]) if strict else list(self.weights)
        )
        self._credit = {q: 0 for q in self.weights}
        self._total = sum(self.weights.values())

    def allocate(self, slots: int) -> dict[str, int]:
        """How many of ``slots`` each queue gets this round."""
        counts = {q: 0 for q in self.weights}
        if slots <= 0:
            return counts
        if self.strict or len(self.order) == 1:  # one queue takes every slot
            counts[self.order[0]] = slots
            return counts
        for _ in range(slots):
            for queue, weight in self.weights.items():
                self._credit[queue] += weight
            chosen = max(self.order, key=lambda q: self._credit[q])
            self._credit[chosen] -= self._total
            counts[chosen] += 1
        return counts

    def fallback_order(self) -> list[str]:
        """Queues in the order spare slots are offered when a queue's share found nothing."""
        return sorted(self.weights, key=lambda q: -self.weights[q])
