"""/metrics: counters every worker adds to in the database, gauges read at scrape time."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from conveyor.app import Conveyor
from conveyor.core import metrics as names
from conveyor.store.stats import StatsStore
from conveyor.store.workers import WorkerStore

#: jobs enqueued through this API process, by (type, queue)
Enqueued = Counter[tuple[str, str]]

_COUNTERS = {
    "jobs_completed_total": "Jobs that completed.",
    "jobs_failed_total": "Jobs that failed for good.",
    "jobs_retried_total": "Attempts that failed and were scheduled to run again.",
    "jobs_canceled_total": "Running jobs that were canceled.",
}


class _Collector:
    def __init__(self, enqueued: Enqueued, conveyor: Conveyor) -> None:
        self.enqueued = enqueued
        self.conveyor = conveyor

    def collect(self) -> Iterator[Metric]:
        engine = self.conveyor.client.jobs.engine
        stats = StatsStore(engine)
        rows = stats.counters()
        enq = CounterMetricFamily(
            "conveyor_jobs_enqueued", "Jobs enqueued through this API process.",
            labels=["type", "queue"],
        )  # fmt: skip
        for (job_type, queue), n in sorted(self.enqueued.items()):
            enq.add_metric([job_type, queue], n)
        yield enq
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
        yield from self._gauges(engine)

    def _gauges(self, engine) -> Iterator[Metric]:  # type: ignore[no-untyped-def]
        now = datetime.now(UTC)
        overview = StatsStore(engine).queue_overview(now)
        depth = GaugeMetricFamily(
            "conveyor_queue_depth", "Jobs by queue and active state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "conveyor_queue_oldest_queued_age_seconds",
            "Age of the oldest queued job.",
            labels=["queue"],
        )
        for queue, data in overview.items():
            for state, n in data["counts"].items():
                depth.add_metric([queue, state], n)
            oldest.add_metric([queue], data["oldest_queued_age_seconds"] or 0.0)
        yield depth
        yield oldest
        since = now - timedelta(seconds=3 * self.conveyor.settings.heartbeat_seconds)
        alive = GaugeMetricFamily("conveyor_workers_alive", "Workers with a recent heartbeat.")
        alive.add_metric([], len(WorkerStore(engine).alive(since)))
        yield alive


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


def render_metrics(enqueued: Enqueued, conveyor: Conveyor) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(enqueued, conveyor))
    return generate_latest(registry), CONTENT_TYPE_LATEST
