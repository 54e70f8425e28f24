"""Charts as inline SVG geometry, computed on the server (no charting library, no script):
line charts of the last hour and an attempts timeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.core.views import AttemptView, JobView
from conveyor.store.history import History, Minute

Series = tuple[str, str, list[float | None]]

WIDTH = 600.0
HEIGHT = 120.0


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    css: str  # the class that colours it (the stylesheet follows the theme)
    points: str  # "x,y x,y ..." for <polyline points=...>
    last: float | None
    end: tuple[float, float] | None  # where the last value is drawn (a dot: one value shows)


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    top: float  # the value at the top edge
    lines: list[Line]
    start: datetime | None
    end: datetime | None

    @property
    def empty(self) -> bool:
        return self.top <= 0


def line_chart(
    title: str,
    unit: str,
    series: list[tuple[str, str, list[float | None]]],
    start: datetime | None = None,
    end: datetime | None = None,
    total: bool = False,
) -> Chart:
    """Each series (name, css class, values oldest first; None is a gap) as a polyline over
    the same width, scaled to a rounded top shared by all. The key shows each series' last
    value, or with ``total`` its sum over the window (the current minute is still filling)."""
    peak = max((v for _, _, values in series for v in values if v is not None), default=0.0)
    top = _nice(peak)
    lines = []
    for name, css, values in series:
        n = len(values)
        step = WIDTH / max(n - 1, 1)
        xy = [
            (round(i * step, 1), round(HEIGHT - (v / top * HEIGHT if top else 0), 1))
            for i, v in enumerate(values)
            if v is not None
        ]
        points = " ".join(f"{x},{y}" for x, y in xy)
        last = next((v for v in reversed(values) if v is not None), None)
        if total:
            last = sum(v for v in values if v is not None)
        lines.append(Line(name, css, points, last, xy[-1] if xy else None))
    return Chart(title, unit, top, lines, start, end)


def _nice(peak: float) -> float:
    """A round value at or above ``peak`` (1, 2, 5 times a power of ten)."""
    if peak <= 0:
        return 0.0
    scale = 10.0 ** (len(str(int(peak))) - 1) if peak >= 1 else 0.001
    while scale * 10 < peak:
        scale *= 10
    for factor in (1, 2, 5, 10, 20, 50, 100):
        if scale * factor >= peak:
            return scale * factor
    return peak


@dataclass(frozen=True, slots=True)
class Bar:
    attempt: int
    outcome: str
    x: float  # percent of the timeline's width
    width: float
    worker: str | None


def timeline(job: JobView) -> list[Bar]:
    """Each attempt as a bar on one axis from the job's creation to its last known time."""
    spans: list[tuple[AttemptView, datetime, datetime]] = []
    for attempt in job.attempts:
        end = attempt.finished_at or job.updated_at
        if attempt.started_at is not None and end is not None:
            spans.append((attempt, attempt.started_at, end))
    if not spans:
        return []
    origin = job.created_at
    total = max((max(e for _, _, e in spans) - origin).total_seconds(), 1e-6)
    bars = []
    for attempt, started, ended in spans:
        x = (started - origin).total_seconds() / total * 100
        width = max((ended - started).total_seconds() / total * 100, 0.6)
        bars.append(
            Bar(attempt.attempt, attempt.outcome, round(x, 2), round(width, 2), attempt.worker_id)
        )
    return bars


def overview(history: History) -> list[Chart]:
    """The overview's charts of the last hour, all queues together."""
    minutes = history.total.minutes
    start = minutes[0].at if minutes else None
    end = minutes[-1].at if minutes else None

    def series(name: str, css: str, pick: Callable[[Minute], float | None]) -> Series:
        return (name, css, [pick(m) for m in minutes])

    return [
        line_chart(
            "Finished per minute (key: the hour's total)",
            "jobs",
            [
                series("completed", "s-ok", lambda m: m.completed),
                series("failed", "s-bad", lambda m: m.failed),
                series("retried", "s-b", lambda m: m.retried),
            ],
            start,
            end,
            total=True,
        ),
        line_chart(
            "Queue depth",
            "jobs",
            [
                series("queued", "s-c", lambda m: m.queued),
                series("running", "s-a", lambda m: m.running),
            ],
            start,
            end,
        ),
        line_chart(
            "Wait before start",
            "s",
            [
                series("p50", "s-ok", lambda m: m.wait_p50_seconds),
                series("p95", "s-b", lambda m: m.wait_p95_seconds),
                series("p99", "s-bad", lambda m: m.wait_p99_seconds),
            ],
            start,
            end,
        ),
    ]


def recent(history: History) -> dict[str, dict[str, Any]]:
    """Per queue, the last few minutes' rates and means (the queues table's columns)."""
    return {
        name: {
            "completed_per_minute": series.recent.completed_per_minute,
            "failed_per_minute": series.recent.failed_per_minute,
            "mean_wait_seconds": series.recent.mean_wait_seconds,
            "mean_run_seconds": series.recent.mean_run_seconds,
        }
        for name, series in history.queues.items()
    }
