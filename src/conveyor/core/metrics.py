"""Names and buckets of the metrics every process contributes to (no I/O)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime

from conveyor.core.states import State

BUCKETS_S: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
OUTCOME_METRICS = {
    State.COMPLETED: "jobs_completed_total",
    State.FAILED: "jobs_failed_total",
    State.RETRYING: "jobs_retried_total",
    State.CANCELED: "jobs_canceled_total",
}
FENCED = "writes_fenced_total"

#: (metric, job type, queue, histogram bound or "") -> amount
Key = tuple[str, str, str, str]
Deltas = defaultdict[Key, float]  # amounts to add: counts and sums of seconds


def new_deltas() -> Deltas:
    return defaultdict(float)


def observe(deltas: Deltas, name: str, job_type: str, queue: str, seconds: float) -> None:
    """Add one observation to a histogram kept as counters: the one bucket it falls in (not
    cumulative: two increments per observation on the hot path; /metrics adds them up)."""
    if seconds < 0.0:
        seconds = 0.0
    bucket, total = _SERIES.get(name) or _series(name)
    deltas[(bucket, job_type, queue, _LE_OF[bisect.bisect_left(BUCKETS_S, seconds)])] += 1
    deltas[(total, job_type, queue, "")] += seconds


_SERIES: dict[str, tuple[str, str]] = {}


def _series(name: str) -> tuple[str, str]:
    names = _SERIES[name] = (f"{name}_bucket", f"{name}_sum")
    return names


def _le(bound: float) -> str:
    return repr(bound)


LE: tuple[str, ...] = tuple(_le(b) for b in BUCKETS_S)
_LE_OF = (*LE, "+Inf")  # by bisect index: the last one is above every bound


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()
