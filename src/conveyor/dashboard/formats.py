"""How values read on a page: ages, durations, numbers, JSON (template filters, no I/O)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any


def duration(seconds: float | None) -> str:
    """1.2 ms, 340 ms, 4.1 s, 3m 05s, 2h 10m, 3d 4h."""
    if seconds is None or math.isnan(seconds):
        return "—"
    s = max(0.0, seconds)
    if s < 1:
        return f"{s * 1000:.1f} ms" if s < 0.01 else f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return duration((end - start).total_seconds())


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "—"
    seconds = (now - when).total_seconds()
    if seconds < 0:
        return f"in {duration(-seconds)}"
    return f"{duration(seconds)} ago"


def stamp(when: datetime | None) -> str:
    """An exact UTC time, for a title or a <time> element."""
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def iso(when: datetime | None) -> str:
    return "" if when is None else when.isoformat()


def number(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def pretty(value: Any) -> str:
    """JSON as it is stored, indented (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def percent(progress: float | None) -> str:
    return "" if progress is None else f"{progress:.0f}%"  # progress runs from 0 to 100


FILTERS: dict[str, Callable[..., Any]] = {
    "duration": duration,
    "between": between,
    "ago": ago,
    "stamp": stamp,
    "iso": iso,
    "number": number,
    "pretty": pretty,
    "percent": percent,
}
