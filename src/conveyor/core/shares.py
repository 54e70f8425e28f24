"""Weighted queue shares: claim slots split by weight, exact over time (largest remainder,
with each queue's remainder carried to the next round)."""

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
        # Each queue's share not yet given, in 1/total slots (integers: exact for ever).
        self._carry = {q: 0 for q in self.weights}
        self._total = sum(self.weights.values())

    def allocate(self, slots: int) -> dict[str, int]:
        """How many of ``slots`` each queue gets this round."""
        counts = {q: 0 for q in self.weights}
        if slots <= 0:
            return counts
        if self.strict or len(self.order) == 1:  # one queue takes every slot
            counts[self.order[0]] = slots
            return counts
        # O(queues) whatever the number of slots: a claim of 1,000 slots is one round, not
        # 1,000 (smooth weighted round robin slot by slot cost a millisecond a claim).
        total = self._total
        owed = {q: self._carry[q] + slots * w for q, w in self.weights.items()}
        for queue, share in owed.items():
            counts[queue] = max(share, 0) // total
        left = slots - sum(counts.values())
        by_remainder = sorted(self.order, key=lambda q: owed[q] - counts[q] * total, reverse=True)
        for queue in by_remainder[:left]:
            counts[queue] += 1
        self._carry = {q: owed[q] - counts[q] * total for q in owed}
        return counts

    def fallback_order(self) -> list[str]:
        """Queues in the order spare slots are offered when a queue's share found nothing."""
        return sorted(self.weights, key=lambda q: -self.weights[q])
