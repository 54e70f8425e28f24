"""Periodic schedules: parse a spec, compute its ticks, plan what a scheduler fires at ``now``.

Pure: no I/O and no clock reads (every instant is passed in). All datetimes are aware and
UTC in and out; naive ones raise ValueError.

Interval specs tick at ``k * every_s`` seconds after the Unix epoch, so every instance agrees
on tick identities. Cron specs are matched on the wall clock of ``tz`` and each matching
local time ``c`` becomes the instant ``c.replace(tzinfo=zone, fold=0)``:

* a local time that does not exist (spring forward) is read with the offset in force before
  the jump, so it fires once, shifted forward by the jump: New York 02:30 on 2026-03-08
  fires at 03:30 EDT (07:30 UTC);
* a local time that occurs twice (fall back) fires once, at its first occurrence: New York
  01:30 on 2026-11-01 fires at 01:30 EDT (05:30 UTC), not again at 01:30 EST. An hourly cron
  therefore fires once per wall-clock hour label and skips the repeated hour's second pass;
* the ticks are the *set* of these instants, so two local times landing on one instant
  (02:00 and 03:00 on a spring-forward day) fire once; ``next_tick`` never repeats or goes
  backwards.

Cron syntax: five fields (minute hour day-of-month month day-of-week) of ``*``, numbers,
names (jan-dec, sun-sat), ranges, lists and ``/step``; day-of-week 7 is Sunday; the aliases
@yearly @annually @monthly @weekly @daily @midnight @hourly. Day-of-month and day-of-week
combine with OR when both are restricted (neither is a plain ``*``), else with AND.
Assumes DST jumps are shorter than a day (true of every zone in use).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor.core.durations import Duration, parse_duration
from conveyor.core.errors import ConveyorError, InvalidDuration

MISSED_LISTED = 100  # Plan.missed lists at most this many missed ticks, the most recent
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US, _MIN, _DAY = timedelta(microseconds=1), timedelta(minutes=1), timedelta(days=1)
_MAX_EVERY_S = 100 * 366 * 86400.0
_SEARCH_DAYS = 9 * 366  # longest gap between fires: Feb 29 across a skipped leap year
_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
            "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@hourly": "0 * * * *"}  # fmt: skip
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()),
           ("month", 1, 12, _MONTHS), ("day-of-week", 0, 7, _WEEKDAYS))  # fmt: skip
_ITEM = re.compile(r"(\*|[0-9a-z]+)(?:-([0-9a-z]+))?(?:/([0-9]+))?")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class InvalidSchedule(ConveyorError, ValueError):
    """A schedule's cron expression, interval or time zone is invalid."""

    code = "invalid_schedule"


class Overlap(StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    CANCEL_PREVIOUS = "cancel_previous"


class CatchUp(StrEnum):
    LATEST = "latest"
    ALL = "all"
    NONE = "none"


@dataclass(frozen=True)
class Spec:
    """When a schedule ticks: exactly one of ``cron`` and ``every_s``; checked on creation."""

    cron: str | None
    every_s: float | None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise InvalidSchedule("a schedule needs exactly one of cron or every")
        if not isinstance(self.tz, str):
            raise InvalidSchedule(f"tz must be an IANA time zone name, got {self.tz!r}")
        _zone(self.tz)
        if isinstance(self.cron, str):
            _compile(self.cron)
        elif self.cron is not None:
            raise InvalidSchedule(f"cron must be a string, got {self.cron!r}")
        elif not isinstance(self.every_s, int | float) or not self.every_s >= 1.0:  # NaN too
            raise InvalidSchedule(f"every must be at least 1 second, got {self.every_s!r}")
        elif self.every_s > _MAX_EVERY_S:
            raise InvalidSchedule(f"every must be at most 100 years, got {self.every_s!r}s")


@dataclass(frozen=True)
class Plan:
    fire: list[datetime]  # ticks to enqueue now, oldest first
    missed: list[datetime]  # the most recent missed ticks (at most MISSED_LISTED), oldest first
    missed_count: int  # all missed ticks (may exceed len(missed))
    next_at: datetime  # the first tick strictly after now


@dataclass(frozen=True)
class _Cron:
    minutes: tuple[int, ...]  # matching minutes of the day, ascending
    months: frozenset[int]
    days: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_or: bool  # both day fields restricted: either may match

    def matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom, dow = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return (dom or dow) if self.day_or else (dom and dow)


def parse_spec(cron: str | None = None, every: Duration | None = None, tz: str = "UTC") -> Spec:
    """A checked Spec; raises InvalidSchedule naming the problem."""
    if (cron is None) == (every is None):
        raise InvalidSchedule("give exactly one of cron or every, e.g. cron='0 2 * * *'")
    every_s = None
    if every is not None:
        try:
            every_s = parse_duration(every, name="every")
        except InvalidDuration as exc:
            raise InvalidSchedule(exc.message) from None
    if isinstance(cron, str):
        cron = " ".join(cron.lower().split())
    return Spec(cron=cron, every_s=every_s, tz=tz.strip() if isinstance(tz, str) else tz)


def next_tick(spec: Spec, after: datetime) -> datetime:
    """The first tick strictly after ``after``."""
    after = _utc(after, "after")
    if spec.every_s is not None:
        step = _step_us(spec)
        return _EPOCH + (_us(after) // step + 1) * step * _US
    cron, zone = _compile(spec.cron or ""), _zone(spec.tz)
    best: datetime | None = None
    day = after.astimezone(zone).date() - _DAY  # a gap may push yesterday's times past after
    for _ in range(_SEARCH_DAYS):
        # Every local time from ``day`` on lands at or after the earlier reading of its
        # midnight, so once that is not before ``best`` nothing later can beat it.
        if best is not None and _earliest(zone, day) >= best:
            return best
        if cron.matches(day):
            found = _first_on_day(cron, zone, day, after)
            if found is not None and (best is None or found < best):
                best = found
        day += _DAY
    raise InvalidSchedule(f"cron {spec.cron!r} does not fire after {after.isoformat()}")


def ticks_between(spec: Spec, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The first ``limit`` ticks t with after < t <= until, oldest first.

    It was cut short iff it holds ``limit`` ticks and ``count_ticks`` says there are more;
    ``latest_ticks`` gives the most recent ones instead.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    until, t = _utc(until, "until"), _utc(after, "after")
    found: list[datetime] = []
    while len(found) < limit and (t := next_tick(spec, t)) <= until:
        found.append(t)
    return found


def count_ticks(spec: Spec, after: datetime, until: datetime) -> int:
    """How many ticks t have after < t <= until (fast, even over years)."""
    after, until = _utc(after, "after"), _utc(until, "until")
    if until <= after:
        return 0
    if spec.every_s is not None:
        return int(_us(until) // _step_us(spec) - _us(after) // _step_us(spec))
    cron, zone = _compile(spec.cron or ""), _zone(spec.tz)
    total, unusual = 0, set[datetime]()
    day, last = after.astimezone(zone).date() - _DAY, until.astimezone(zone).date() + _DAY
    while day <= last:
        if cron.matches(day):
            offset = _fixed_offset(zone, day - _DAY, days=2)
            if offset is None:  # near a transition: convert each time, the set dedupes
                unusual.update(t for t in _day_ticks(cron, zone, day) if after < t <= until)
            else:  # one offset around this day: its ticks are its own, count by bisection
                base = datetime.combine(day, time(), UTC) - offset
                hi, lo = (until - base) // _MIN, (after - base) // _MIN
                total += bisect_right(cron.minutes, hi) - bisect_right(cron.minutes, lo)
        day += _DAY
    return total + len(unusual)


def latest_ticks(spec: Spec, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The last ``limit`` ticks t with after < t <= until, oldest first."""
    after, until = _utc(after, "after"), _utc(until, "until")
    if limit <= 0 or until <= after:
        return []
    if spec.every_s is not None:
        step = _step_us(spec)
        last, first = _us(until) // step, _us(after) // step + 1
        return [_EPOCH + k * step * _US for k in range(max(first, last - limit + 1), last + 1)]
    width = timedelta(hours=1)
    while True:  # widen a window back from until until it holds enough ticks
        lo = max(after, until - width)
        if lo == after or count_ticks(spec, lo, until) >= limit:
            return ticks_between(spec, lo, until, 2**62)[-limit:]
        width *= 4


def plan(
    spec: Spec,
    last_tick: datetime | None,
    now: datetime,
    catch_up: CatchUp,
    *,
    grace_s: float = 5.0,
    max_fire: int = 100,
    created_at: datetime | None = None,
) -> Plan:
    """What a scheduler does at ``now`` (the database clock).

    Due ticks are those after ``last_tick`` (else ``created_at``, else ``now - grace_s``, so
    a new schedule never fires ticks from before it existed) and at or before ``now``. A due
    tick at most ``grace_s`` old is on time and always fires. Older (late) ticks follow
    ``catch_up``: LATEST fires the most recent late tick; ALL fires the oldest ``max_fire``
    late ticks; NONE fires none. Late ticks not fired are missed. ``missed`` lists the most
    recent MISSED_LISTED of them, so max(fire + missed) is always the newest due tick.
    """
    now = _utc(now, "now")
    if not grace_s >= 0 or max_fire < 0:
        raise ValueError(f"grace_s and max_fire must be >= 0, got {grace_s!r}, {max_fire!r}")
    cut = now - timedelta(seconds=grace_s)  # ticks at or after cut are on time
    if last_tick is not None:
        start = _utc(last_tick, "last_tick")
    else:
        start = cut if created_at is None else _utc(created_at, "created_at")
    late_end = cut - _US  # ticks are whole microseconds: t < cut  <=>  t <= cut - 1us
    on_time = ticks_between(spec, max(start, late_end), now, 2**62)
    late_count = count_ticks(spec, start, late_end)
    fire: list[datetime] = []
    missed_after, missed_until = start, late_end  # the late ticks not fired lie in here
    if catch_up is CatchUp.LATEST:
        fire = latest_ticks(spec, start, late_end, 1)
        missed_until = fire[0] - _US if fire else late_end
    elif catch_up is CatchUp.ALL:
        fire = ticks_between(spec, start, late_end, max_fire)
        missed_after = fire[-1] if fire else start
    missed_count = late_count - len(fire)
    missed = latest_ticks(spec, missed_after, missed_until, min(missed_count, MISSED_LISTED))
    return Plan(fire + on_time, missed, missed_count, next_tick(spec, now))


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _US


def _step_us(spec: Spec) -> int:
    return max(1, round((spec.every_s or 0) * 1_000_000))


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise InvalidSchedule(f"unknown time zone {name!r}; use an IANA name") from None


def _earliest(zone: ZoneInfo, day: date) -> datetime:
    """The earlier of the two readings of ``day``'s local midnight."""
    return min(datetime.combine(day, time(fold=f), zone).astimezone(UTC) for f in (0, 1))


def _fixed_offset(zone: ZoneInfo, day: date, days: int = 1) -> timedelta | None:
    """The UTC offset if it is the same at the midnights bounding ``days`` days from ``day``."""
    offsets = {datetime.combine(day + i * _DAY, time(), zone).utcoffset() for i in range(days + 1)}
    return offsets.pop() if len(offsets) == 1 else None


def _day_ticks(cron: _Cron, zone: ZoneInfo, day: date) -> list[datetime]:
    """The instants of ``day``'s matching local times (fold=0), deduplicated, ascending."""
    base = datetime.combine(day, time(), zone)
    return sorted({(base + m * _MIN).astimezone(UTC) for m in cron.minutes})


def _first_on_day(cron: _Cron, zone: ZoneInfo, day: date, after: datetime) -> datetime | None:
    offset = _fixed_offset(zone, day)
    if offset is None:  # a transition today: convert every matching time
        return next((t for t in _day_ticks(cron, zone, day) if t > after), None)
    base = datetime.combine(day, time(), UTC) - offset  # local midnight as an instant
    i = bisect_right(cron.minutes, (after - base) // _MIN)
    return base + cron.minutes[i] * _MIN if i < len(cron.minutes) else None


@lru_cache(maxsize=256)
def _compile(expr: str) -> _Cron:
    text = " ".join(expr.lower().split())
    if not text:
        raise InvalidSchedule("cron expression is empty; e.g. '0 2 * * *'")
    if text.startswith("@"):
        if text not in _ALIASES:
            raise InvalidSchedule(f"cron {expr!r}: unknown alias; use one of {', '.join(_ALIASES)}")
        text = _ALIASES[text]
    fields = text.split(" ")
    if len(fields) != 5:
        extra = "; seconds and year fields are not supported" if len(fields) in (6, 7) else ""
        raise InvalidSchedule(
            f"cron {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}{extra}"
        )
    sets = [_field(expr, f, *spec) for f, spec in zip(fields, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = sets
    weekdays = frozenset(d % 7 for d in weekdays)
    day_or = fields[2] != "*" and fields[4] != "*"
    if not day_or and not any(d <= _MONTH_DAYS[m - 1] for d in days for m in months):
        raise InvalidSchedule(f"cron {expr!r} never fires: no chosen month has those days")
    return _Cron(
        tuple(sorted(h * 60 + m for h in hours for m in minutes)), months, days, weekdays, day_or
    )


def _field(
    expr: str, text: str, name: str, lo: int, hi: int, names: tuple[str, ...]
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise InvalidSchedule(f"cron {expr!r}: {name} {item!r} is not valid")
        first, last, step = match.groups()
        if first == "*" and last is not None:
            raise InvalidSchedule(f"cron {expr!r}: {name} {item!r} is not valid")
        a = lo if first == "*" else _value(expr, first, name, lo, hi, names)
        b = _value(expr, last, name, lo, hi, names) if last else (hi if first == "*" or step else a)
        if step is not None and int(step) == 0:
            raise InvalidSchedule(f"cron {expr!r}: {name} step in {item!r} must be at least 1")
        if a > b:
            raise InvalidSchedule(f"cron {expr!r}: {name} range {item!r} runs backwards")
        values.update(range(a, b + 1, int(step or 1)))
    return frozenset(values)


def _value(expr: str, token: str, name: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        if not lo <= int(token) <= hi:
            raise InvalidSchedule(f"cron {expr!r}: {name} {int(token)} is out of range {lo}-{hi}")
        return int(token)
    if token in names:
        return names.index(token) + lo if name == "month" else names.index(token)
    kind = f"a number or a name ({', '.join(names)})" if names else "a number"
    raise InvalidSchedule(f"cron {expr!r}: {name} {token!r} is not {kind}")
