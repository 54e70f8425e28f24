"""Retry policy: exponential backoff with full jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a failed job runs again.

    ``max_attempts`` counts every run, the first included: retries=3 means 4 attempts.
    """

    max_attempts: int = 4
    base_s: float = 1.0
    cap_s: float = 300.0
    retry_on: tuple[type[BaseException], ...] = ()
    dont_retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff base and cap must not be negative")

    def backoff_window_s(self, attempt: int) -> float:
        """Upper bound of the delay after the ``attempt``-th failure (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)
        return float(min(self.cap_s, self.base_s * (2.0**exponent)))

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, window]."""
        return (rng or random).uniform(0.0, self.backoff_window_s(attempt))

    def retries(self, exc: BaseException) -> bool:
        """Whether this exception class may be retried at all (attempts aside)."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        if self.retry_on:
            return isinstance(exc, self.retry_on)
        return True
