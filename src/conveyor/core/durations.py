"""Durations as seconds or strings such as '90s', '15m', '2h', '1d', '1h30m'."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from conveyor.core.errors import InvalidDuration

Duration = int | float | str | timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

#: The longest timeout a job type or an enqueue may set: 7 days.
MAX_TIMEOUT_S = 7 * 86400.0


def parse_duration(value: Duration, *, name: str = "duration") -> float:
    """Seconds in ``value``; raises InvalidDuration naming ``name`` when it is not a duration."""
    if isinstance(value, bool):
        raise InvalidDuration(f"{name}: {value!r} is not a duration")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise InvalidDuration(f"{name}: {value!r} is too large") from None
    elif isinstance(value, str):
        seconds = _parse_text(value.strip().lower(), name)
    else:
        raise InvalidDuration(f"{name}: {value!r} is not a duration")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise InvalidDuration(f"{name}: {value!r} must be a finite, non-negative duration")
    return seconds


def parse_timeout(value: Duration, *, name: str = "timeout") -> float:
    """Seconds in a timeout: a positive duration of at most MAX_TIMEOUT_S (no timeout is None,
    never 0); raises InvalidDuration naming ``name`` otherwise."""
    seconds = parse_duration(value, name=name)
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise InvalidDuration(
            f"{name}: {value!r} must be more than 0 and at most {MAX_TIMEOUT_S:.0f} s (7 days)"
        )
    return seconds


def _parse_text(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise InvalidDuration(
            f"{name}: {text!r} is not a duration; use seconds or e.g. '90s', '15m', '2h', '1d'"
        )
    return total


def parse_instant(name: str, text: str) -> datetime:
    """An RFC 3339 time with a zone (``2026-12-03T08:00:00Z``) as a UTC datetime; a
    ValueError that names ``name`` and what is wrong otherwise (the API's and the dashboard's
    one rule for times given as text)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise ValueError(f"{name} needs a time zone, e.g. 2026-12-03T08:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name}: {text!r} is out of range") from None
