"""Charts as inline SVG geometry, computed on the server (no charting library, no script):
line charts of the last hour and an attempts timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.core.views import AttemptView, JobView

WIDTH = 600.0
HEIGHT = 120.0


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    css: str  # the class that colours it (the stylesheet follows the theme)
    points: str  # "x,y x,y ..." for <polyline points=...>
    last: float | None


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
) -> Chart:
    """Each series (name, css class, values oldest first; None is a gap) as a polyline over
    the same width, scaled to a rounded top shared by all."""
    peak = max((v for _, _, values in series for v in values if v is not None), default=0.0)
    top = _nice(peak)
    lines = []
    for name, css, values in series:
        n = len(values)
        step = WIDTH / max(n - 1, 1)
        points = " ".join(
            f"{i * step:.1f},{HEIGHT - (v / top * HEIGHT if top else 0):.1f}"
            for i, v in enumerate(values)
            if v is not None
        )
        last = next((v for v in reversed(values) if v is not None), None)
        lines.append(Line(name, css, points, last))
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


def overview(history: Any) -> list[Chart]:
    """The overview's charts of the last hour, from StatsStore.history."""
    raise NotImplementedError


def recent(history: Any) -> dict[str, dict[str, Any]]:
    raise NotImplementedError
