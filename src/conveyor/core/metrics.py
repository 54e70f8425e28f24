"""Names and buckets of the metrics every process contributes to (no I/O)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping
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
#: Jobs enqueued through the HTTP API, added by each API process (``api.metrics``).
ENQUEUED = "jobs_enqueued_total"

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


# -- per minute, per queue (the dashboard's history) --------------------------------------------

WAIT = "job_wait_seconds"
RUN = "job_run_seconds"
WAIT_BUCKET, WAIT_SUM = f"{WAIT}_bucket", f"{WAIT}_sum"
RUN_BUCKET, RUN_SUM = f"{RUN}_bucket", f"{RUN}_sum"
#: The metrics also added up per minute and per queue (job types folded): what a chart of
#: the last hour shows, and nothing else, to keep those rows few.
MINUTE_METRICS = frozenset({*OUTCOME_METRICS.values(), WAIT_BUCKET, WAIT_SUM, RUN_BUCKET, RUN_SUM})
#: Depth gauges recorded per minute and per queue: levels, not sums.
QUEUED_GAUGE, RUNNING_GAUGE = "queued", "running"
#: Recorded (queue "") for each minute a depth sample was taken: a gauge missing then is 0,
#: missing otherwise is unknown.
SAMPLED_GAUGE = "depth_sampled"
#: (metric, queue, histogram bound or "") -> amount
MinuteKey = tuple[str, str, str]


def per_queue(deltas: Mapping[Key, float]) -> dict[MinuteKey, float]:
    """The deltas of MINUTE_METRICS, with job types folded into their queue."""
    folded: defaultdict[MinuteKey, float] = defaultdict(float)
    for (metric, _job_type, queue, le), amount in deltas.items():
        if metric in MINUTE_METRICS:
            folded[(metric, queue, le)] += amount
    return dict(folded)


def minute_of(at: datetime) -> datetime:
    """The minute ``at`` falls in (its start)."""
    return at.replace(second=0, microsecond=0)


def quantile(counts: dict[str, float], q: float) -> float | None:
    """The ``q`` quantile (0 < q < 1) of a histogram given as per-bucket counts by bound
    (``LE`` strings and "+Inf", not cumulative), interpolated linearly inside its bucket as
    Prometheus' ``histogram_quantile`` does; None without observations. A quantile in the
    "+Inf" bucket is reported as the highest finite bound: the buckets know no more."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    seen, lower = 0.0, 0.0
    for bound, le in zip(BUCKETS_S, LE, strict=True):
        n = counts.get(le, 0.0)
        if n > 0 and seen + n >= rank:
            return lower + (bound - lower) * (rank - seen) / n
        seen, lower = seen + n, bound
    return BUCKETS_S[-1]
