"""/metrics: counters every process adds to in the database, gauges read at scrape time.

Every counter is read from the database (``conveyor_counters``), so every API process of
``conveyor api --workers N`` shows the same counters: workers add their finishes, and each
API process adds the jobs enqueued through it (``EnqueuedCounts``, batched, not per request).

Bounded whatever the number of queues: queue gauges for at most QUEUE_LIMIT queues
(``conveyor_queues_truncated`` says when more had jobs), per-(type, queue) counters for at
most COUNTER_PAIRS_LIMIT pairs, the rest added up under ``queue="(other)"``
(``conveyor_counters_folded``), and each API process's enqueue counts likewise."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from datetime import timedelta
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from conveyor.app import Conveyor
from conveyor.core import metrics as names
from conveyor.core.names import OTHER_QUEUE
from conveyor.services import Services
from conveyor.store.stats import Overview

log = logging.getLogger("conveyor.api")

#: Most (type, queue) pairs the enqueue counts of one API process keep apart; enqueues of
#: later new pairs count under (type, OTHER_QUEUE).
ENQUEUED_PAIRS_LIMIT = 200
#: Least time between two writes of an API process's enqueue counts to the database (a
#: scrape adds its own process's at once; shutdown adds what is left).
ENQUEUED_FLUSH_S = 1.0

_COUNTERS = {
    names.ENQUEUED: "Jobs enqueued through the HTTP API (every API process).",
    "jobs_completed_total": "Jobs that completed.",
    "jobs_failed_total": "Jobs that failed for good.",
    "jobs_retried_total": "Attempts that failed and were scheduled to run again.",
    "jobs_canceled_total": "Running jobs that were canceled.",
}

T = TypeVar("T")
#: Adds counter deltas to the database (``StatsStore.add``).
AddCounters = Callable[[Mapping[names.Key, float]], None]


class EnqueuedCounts:
    """Jobs enqueued through this API process by (type, queue), added to the database's
    counters by ``add_counters`` off the request's path (a timer thread): at once when the
    last write is ``flush_s`` old, else when it will be. So one write per ``flush_s`` at
    most, whatever the rate of POST /jobs, and an enqueue after a quiet spell is counted
    within milliseconds (no count outlives its request by long, even without a shutdown).

    At most ``max_pairs`` pairs: a pair first seen once the limit is reached counts under
    (type, OTHER_QUEUE)."""

    def __init__(
        self,
        add_counters: AddCounters,
        max_pairs: int | None = None,
        flush_s: float = ENQUEUED_FLUSH_S,
    ) -> None:
        self.add_counters = add_counters
        self.max_pairs = ENQUEUED_PAIRS_LIMIT if max_pairs is None else max_pairs
        self.flush_s = flush_s
        self._known: set[tuple[str, str]] = set()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._timer: threading.Timer | None = None
        self._last_flush = -flush_s  # monotonic time the last write began
        self._lock = threading.Lock()  # POST /jobs/batch counts from a pool thread

    def add(self, job_type: str, queue: str, n: int = 1) -> None:
        key = (job_type, queue)
        with self._lock:
            if key not in self._known:
                if len(self._known) >= self.max_pairs:
                    key = (job_type, OTHER_QUEUE)
                self._known.add(key)
            self._pending[key] += n
            self._arm()

    def flush(self) -> None:
        """Add what is pending to the database; kept for the next flush if that fails."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._timer = None  # the next add, or a failure below, arms a new one
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            self.add_counters({(names.ENQUEUED, t, q, ""): n for (t, q), n in pending.items()})
        except Exception as exc:  # counters are added: adding them later is exact
            log.warning("could not add enqueue counts to the database: %s", exc)
            with self._lock:
                self._pending.update(pending)
                self._arm()

    def _arm(self) -> None:
        """Start the flush timer unless one is due (under the lock)."""
        if self._timer is None:
            wait_s = max(0.0, self._last_flush + self.flush_s - time.monotonic())
            self._timer = threading.Timer(wait_s, self.flush)
            self._timer.daemon = True
            self._timer.start()


class SharedViews:
    """Operational views (/metrics, /queues) render one at a time per API process, and
    requests for a view already rendering wait for that render and share its result: any
    number of concurrent scrapes holds at most one pooled connection."""

    def __init__(self) -> None:
        self._one_at_a_time = threading.Lock()
        self._guard = threading.Lock()
        self._flights: dict[str, Future[Any]] = {}

    def get(self, key: str, render: Callable[[], T]) -> T:
        """``render()``, or the result of the render of ``key`` already under way."""
        with self._guard:
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if owner:
            self._fly(key, flight, render)
        result: T = flight.result()
        return result

    def _fly(self, key: str, flight: Future[Any], render: Callable[[], Any]) -> None:
        try:
            with self._one_at_a_time:
                flight.set_result(render())
        except BaseException as exc:  # every waiter gets it (e.g. DatabaseUnavailable)
            flight.set_exception(exc)
        finally:
            with self._guard:
                del self._flights[key]


class _Collector:
    def __init__(self, conveyor: Conveyor) -> None:
        self.conveyor = conveyor

    def collect(self) -> Iterator[Metric]:
        services = self.conveyor.services
        counted = services.stats.counters()
        rows = counted.rows
        for metric, help_text in _COUNTERS.items():
            family = CounterMetricFamily(
                f"conveyor_{metric.removesuffix('_total')}", help_text, labels=["type", "queue"]
            )
            for r in rows:
                if r["metric"] == metric:
                    family.add_metric([r["job_type"], r["queue"]], r["value"])
            yield family
        fenced = sum(r["value"] for r in rows if r["metric"] == names.FENCED)
        fenced_family = CounterMetricFamily(
            "conveyor_writes_fenced", "Writes of attempts that had lost their lease, rejected."
        )
        fenced_family.add_metric([], fenced)
        yield fenced_family
        yield from _histograms(rows)
        yield _flag(
            "conveyor_counters_folded",
            f"1 when counters of (type, queue) pairs beyond the first by name are added up "
            f'under queue="{OTHER_QUEUE}".',
            counted.folded,
        )
        yield from self._gauges(services)

    def _gauges(self, services: Services) -> Iterator[Metric]:
        now = self.conveyor.client.clock.now()  # the database's time, which the rows are on
        overview = services.stats.queue_overview(now)
        yield from _queue_gauges(overview)
        since = now - timedelta(seconds=3 * self.conveyor.settings.heartbeat_seconds)
        alive = GaugeMetricFamily("conveyor_workers_alive", "Workers with a recent heartbeat.")
        alive.add_metric([], len(services.workers.alive(since)))
        yield alive


def _queue_gauges(overview: Overview) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "conveyor_queue_depth", "Jobs by queue and active state.", labels=["queue", "state"]
    )
    oldest = GaugeMetricFamily(
        "conveyor_queue_oldest_queued_age_seconds",
        "Age of the oldest queued job.",
        labels=["queue"],
    )
    for queue, data in overview.queues.items():
        for state, n in data["counts"].items():
            depth.add_metric([queue, state], n)
        oldest.add_metric([queue], data["oldest_queued_age_seconds"] or 0.0)
    yield depth
    yield oldest
    yield _flag(
        "conveyor_queues_truncated",
        "1 when more queues had jobs than the queue gauges show (the busiest are shown).",
        overview.truncated,
    )


def _flag(name: str, help_text: str, value: bool) -> Metric:
    gauge = GaugeMetricFamily(name, help_text)
    gauge.add_metric([], 1.0 if value else 0.0)
    return gauge


def _histograms(rows: list[dict[str, object]]) -> Iterator[Metric]:
    for name, help_text in (
        ("job_run_seconds", "How long attempts ran."),
        ("job_wait_seconds", "How long jobs waited between due and started."),
    ):
        buckets: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        sums: dict[tuple[str, str], float] = defaultdict(float)
        for r in rows:
            key = (str(r["job_type"]), str(r["queue"]))
            if r["metric"] == f"{name}_bucket":
                buckets[key][str(r["le"])] = float(r["value"])  # type: ignore[arg-type]
            elif r["metric"] == f"{name}_sum":
                sums[key] = float(r["value"])  # type: ignore[arg-type]
        family = HistogramMetricFamily(f"conveyor_{name}", help_text, labels=["type", "queue"])
        for key, by_le in sorted(buckets.items()):
            ordered, total = [], 0.0
            for le in [*names.LE, "+Inf"]:  # stored per bucket; Prometheus wants cumulative
                total += by_le.get(le, 0.0)
                ordered.append((le, total))
            family.add_metric(list(key), ordered, sums.get(key, 0.0))
        yield family


def render_metrics(enqueued: EnqueuedCounts, conveyor: Conveyor) -> tuple[bytes, str]:
    """The exposition text; this process's pending enqueue counts are written first."""
    enqueued.flush()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(conveyor))
    return generate_latest(registry), CONTENT_TYPE_LATEST
