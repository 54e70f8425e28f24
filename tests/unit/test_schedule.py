"""core.schedule: parsing, epoch-anchored intervals, cron on local wall clocks across DST, plan()."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor.core.errors import ConveyorError
from conveyor.core.schedule import (
    MISSED_LISTED,
    CatchUp,
    InvalidSchedule,
    Overlap,
    Spec,
    count_ticks,
    latest_ticks,
    next_tick,
    parse_spec,
    plan,
    ticks_between,
)

NY, BERLIN = "America/New_York", "Europe/Berlin"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ticks(spec: Spec, after: datetime, count: int) -> list[datetime]:
    """``count`` ticks by calling next_tick repeatedly (what a scheduler does)."""
    out, t = [], after
    for _ in range(count):
        t = next_tick(spec, t)
        out.append(t)
    return out


def on_day(spec: Spec, tz: str, day: tuple[int, int, int]) -> list[datetime]:
    """The ticks whose local (``tz``) date is ``day``."""
    start = datetime(*day, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    found = ticks_between(spec, start - timedelta(days=1), start + timedelta(days=2), 10_000)
    return [t for t in found if t.astimezone(ZoneInfo(tz)).date().timetuple()[:3] == day]


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "stored"),
    [
        ("0 2 * * *", "0 2 * * *"),
        ("  */15  9-17 * * 1-5 ", "*/15 9-17 * * 1-5"),
        ("30 6 * * MON-FRI", "30 6 * * mon-fri"),
        ("0 0 1 jan,jul *", "0 0 1 jan,jul *"),
        ("0 0 * * 7", "0 0 * * 7"),
        ("5/20 * * * *", "5/20 * * * *"),
        ("@daily", "@daily"),
        ("@HOURLY", "@hourly"),
    ],
)
def test_valid_cron_forms_are_accepted_and_normalized(cron: str, stored: str) -> None:
    spec = parse_spec(cron=cron, tz="Asia/Seoul")
    assert spec == Spec(cron=stored, every_s=None, tz="Asia/Seoul")


@pytest.mark.parametrize(
    ("alias", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases_tick_like_their_expansion(alias: str, same_as: str) -> None:
    start = utc(2026, 2, 27, 13, 7)
    assert ticks(parse_spec(cron=alias), start, 5) == ticks(parse_spec(cron=same_as), start, 5)


def test_names_mean_their_numbers() -> None:
    start = utc(2026, 1, 1)
    named = parse_spec(cron="0 9 * jan-mar,dec sun,sat")
    numbered = parse_spec(cron="0 9 * 1-3,12 0,6")
    assert ticks(named, start, 40) == ticks(numbered, start, 40)
    assert ticks(parse_spec(cron="0 0 * * 7"), start, 5) == ticks(
        parse_spec(cron="0 0 * * 0"), start, 5
    )


@pytest.mark.parametrize(
    ("every", "seconds"),
    [
        ("90s", 90.0),
        ("1h", 3600.0),
        (5, 5.0),
        (2.5, 2.5),
        (timedelta(minutes=2), 120.0),
        ("1", 1.0),
    ],
)
def test_every_accepts_durations(every: str | float | timedelta, seconds: float) -> None:
    assert parse_spec(every=every) == Spec(cron=None, every_s=seconds, tz="UTC")


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "expected 5 fields .* got 4"),
        ("* * * * * *", "got 6; seconds and year fields are not supported"),
        ("0 0 0 * * * 2030", "got 7"),
        ("61 * * * *", r"cron '61 \* \* \* \*': minute 61 is out of range 0-59"),
        ("* 24 * * *", "hour 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month 0 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week 8 is out of range 0-7"),
        ("* * * * mon-xyz", "day-of-week 'xyz' is not a number or a name"),
        ("* * * foo *", "month 'foo' is not a number or a name"),
        ("mon * * * *", "minute 'mon' is not a number"),
        ("every day", "expected 5 fields .* got 2"),
        ("*/0 * * * *", "step .* must be at least 1"),
        ("30-10 * * * *", "range '30-10' runs backwards"),
        ("1,,2 * * * *", "minute '' is not valid"),
        ("*-5 * * * *", "not valid"),
        ("L * * * *", "not a number"),
        ("H * * * *", "not a number"),
        ("0 0 L * *", "not a number"),
        ("0 0 * * 5#2", "not valid"),
        ("0 0 30 2 *", "never fires"),
        ("@reboot", "unknown alias"),
    ],
)
def test_bad_cron_is_refused_naming_the_problem(cron: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message) as caught:
        parse_spec(cron=cron)
    assert caught.value.code == "invalid_schedule"
    assert isinstance(caught.value, ConveyorError)


def test_feb_29_is_allowed_and_found_across_a_skipped_leap_year() -> None:
    spec = parse_spec(cron="0 0 29 2 *")
    assert next_tick(spec, utc(2096, 3, 1)) == utc(2104, 2, 29)  # 2100 is not a leap year


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of cron or every"),
        ({"cron": "* * * * *", "every": "1m"}, "exactly one of cron or every"),
        ({"every": 0}, "at least 1 second"),
        ({"every": "0s"}, "at least 1 second"),
        ({"every": 0.5}, "at least 1 second"),
        ({"every": -5}, "every"),
        ({"every": "soon"}, "every: 'soon' is not a duration"),
        ({"every": 10**12}, "at most 100 years"),
        ({"cron": "0 2 * * *", "tz": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"every": "1m", "tz": ""}, "unknown time zone"),
        ({"every": "1m", "tz": "America"}, "unknown time zone"),
        ({"every": "1m", "tz": "../etc/passwd"}, "unknown time zone"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        parse_spec(**kwargs)  # type: ignore[arg-type]


def test_spec_checks_itself_when_built_directly() -> None:
    with pytest.raises(InvalidSchedule, match="61"):
        Spec(cron="61 * * * *", every_s=None)
    with pytest.raises(InvalidSchedule, match="exactly one"):
        Spec(cron=None, every_s=None)
    with pytest.raises(InvalidSchedule, match="at least 1 second"):
        Spec(cron=None, every_s=float("nan"))
    assert Spec(cron=None, every_s=60, tz="UTC").every_s == 60  # a row read back from a table


def test_enums_are_strings() -> None:
    assert CatchUp("all") is CatchUp.ALL and Overlap("cancel_previous") is Overlap.CANCEL_PREVIOUS
    assert [c.value for c in CatchUp] == ["latest", "all", "none"]
    assert [o.value for o in Overlap] == ["allow", "skip", "cancel_previous"]


# -- intervals ------------------------------------------------------------------------------


def test_interval_ticks_are_anchored_at_the_epoch() -> None:
    spec = parse_spec(every="90s")
    a = ticks(spec, utc(2026, 5, 1, 12, 0, 7), 10)
    b = ticks(spec, utc(2026, 5, 1, 12, 3, 59, 999_999), 8)
    assert a[2:] == b  # two instances started at different moments agree on tick identities
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert all((t - epoch) % timedelta(seconds=90) == timedelta(0) for t in a)
    assert a[0] == utc(2026, 5, 1, 12, 1, 30)
    assert [y - x for x, y in zip(a, a[1:], strict=False)] == [timedelta(seconds=90)] * 9


def test_interval_next_tick_is_strictly_after() -> None:
    spec = parse_spec(every="1h")
    assert next_tick(spec, utc(2026, 5, 1, 12)) == utc(2026, 5, 1, 13)
    assert next_tick(spec, utc(2026, 5, 1, 12) - timedelta(microseconds=1)) == utc(2026, 5, 1, 12)
    fractional = parse_spec(every=2.5)
    assert next_tick(fractional, utc(2026, 5, 1, 12)) == utc(2026, 5, 1, 12, 0, 2, 500_000)


def test_intervals_ignore_the_time_zone() -> None:
    start = utc(2026, 3, 8, 6)  # across New York's spring-forward
    assert ticks(parse_spec(every="1h", tz=NY), start, 4) == ticks(parse_spec(every="1h"), start, 4)


# -- cron -----------------------------------------------------------------------------------


def test_cron_in_utc() -> None:
    spec = parse_spec(cron="*/20 9 * * *")
    assert ticks(spec, utc(2026, 5, 1, 9, 20), 4) == [
        utc(2026, 5, 1, 9, 40),
        utc(2026, 5, 2, 9, 0),
        utc(2026, 5, 2, 9, 20),
        utc(2026, 5, 2, 9, 40),
    ]
    assert next_tick(spec, utc(2026, 5, 1, 9, 19, 59, 999_999)) == utc(2026, 5, 1, 9, 20)


def test_cron_in_seoul_runs_on_seoul_wall_clock() -> None:
    spec = parse_spec(cron="0 2 * * *", tz="Asia/Seoul")  # 02:00 KST = 17:00 UTC the day before
    assert ticks(spec, utc(2026, 6, 1), 3) == [
        utc(2026, 6, 1, 17),
        utc(2026, 6, 2, 17),
        utc(2026, 6, 3, 17),
    ]
    assert next_tick(spec, utc(2026, 6, 1, 16, 59)) == utc(2026, 6, 1, 17)
    assert next_tick(spec, utc(2026, 6, 1, 17)) == utc(2026, 6, 2, 17)


def test_weekdays_only_skips_the_weekend() -> None:
    spec = parse_spec(cron="30 6 * * mon-fri")
    got = ticks(spec, utc(2026, 5, 1, 7), 6)  # Friday 1 May 2026, after its tick
    assert got == [utc(2026, 5, d, 6, 30) for d in (4, 5, 6, 7, 8, 11)]
    assert {t.strftime("%a") for t in got} == {"Mon", "Tue", "Wed", "Thu", "Fri"}


def test_day_of_month_and_day_of_week_combine_with_or_when_both_restricted() -> None:
    spec = parse_spec(cron="0 0 13 * fri")  # the 13th, and every Friday
    got = ticks(spec, utc(2026, 2, 1), 6)
    assert got == [utc(2026, 2, d) for d in (6, 13, 20, 27)] + [utc(2026, 3, 6), utc(2026, 3, 13)]
    anded = parse_spec(cron="0 0 13 * *")
    assert ticks(anded, utc(2026, 2, 1), 2) == [utc(2026, 2, 13), utc(2026, 3, 13)]


# New York 2026: clocks jump 02:00 EST -> 03:00 EDT on 8 March (07:00 UTC) and fall back
# 02:00 EDT -> 01:00 EST on 1 November (06:00 UTC).


def test_spring_forward_nonexistent_time_fires_once_shifted_by_the_jump() -> None:
    spec = parse_spec(cron="30 2 * * *", tz=NY)
    got = ticks(spec, utc(2026, 3, 6), 4)
    assert got == [
        utc(2026, 3, 6, 7, 30),  # 02:30 EST
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 30),  # 02:30 does not exist: fold=0 reads it as EST -> 03:30 EDT
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    assert on_day(spec, NY, (2026, 3, 8)) == [utc(2026, 3, 8, 7, 30)]
    assert got[2].astimezone(ZoneInfo(NY)).strftime("%H:%M %Z") == "03:30 EDT"


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence() -> None:
    spec = parse_spec(cron="30 1 * * *", tz=NY)
    got = ticks(spec, utc(2026, 10, 30), 4)
    assert got == [
        utc(2026, 10, 30, 5, 30),  # 01:30 EDT
        utc(2026, 10, 31, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT, the first of two; 01:30 EST (06:30) does not fire
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]
    assert on_day(spec, NY, (2026, 11, 1)) == [utc(2026, 11, 1, 5, 30)]
    # Asked from inside the repeated hour, it does not fire the repeat.
    assert next_tick(spec, utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 30)


@pytest.mark.parametrize(("day", "count"), [((2026, 3, 8), 23), ((2026, 11, 1), 24)])
def test_hourly_across_transitions_fires_once_per_wall_clock_hour(
    day: tuple[int, int, int], count: int
) -> None:
    spec = parse_spec(cron="0 * * * *", tz=NY)
    start = datetime(*day, tzinfo=ZoneInfo(NY)).astimezone(UTC) - timedelta(hours=3)
    got = ticks(spec, start, count + 6)
    assert all(a < b for a, b in zip(got, got[1:], strict=False))  # increasing, no duplicates
    assert got == ticks_between(spec, start, got[-1], 1000)
    todays = on_day(spec, NY, day)
    labels = [t.astimezone(ZoneInfo(NY)).strftime("%H:%M") for t in todays]
    assert len(todays) == count and len(set(labels)) == count  # one tick per hour label
    assert labels == sorted(labels)
    if day == (2026, 3, 8):
        assert "02:00" not in labels  # 02:00 and 03:00 are one instant (07:00 UTC)
        assert todays[1:3] == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7)]
    else:
        assert todays[1:3] == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7)]  # 01:00 EDT, 02:00 EST


def test_half_hourly_on_spring_forward_never_repeats() -> None:
    spec = parse_spec(cron="*/30 * * * *", tz=NY)
    got = ticks(spec, utc(2026, 3, 8, 5, 45), 5)
    # 01:00 EST, 01:30 EST, 02:00(=03:00 EDT), 02:30(=03:30 EDT), 04:00 EDT
    assert got == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7)] + [
        utc(2026, 3, 8, 7, 30),
        utc(2026, 3, 8, 8),
    ]
    assert next_tick(spec, utc(2026, 3, 8, 7, 10)) == utc(2026, 3, 8, 7, 30)


def test_berlin_transitions() -> None:
    spec = parse_spec(cron="30 2 * * *", tz=BERLIN)
    # 29 March 2026: 02:00 CET -> 03:00 CEST; 02:30 is read as CET = 01:30 UTC (03:30 CEST).
    assert on_day(spec, BERLIN, (2026, 3, 29)) == [utc(2026, 3, 29, 1, 30)]
    # 25 October 2026: 03:00 CEST -> 02:00 CET; 02:30 fires once, as CEST = 00:30 UTC.
    assert on_day(spec, BERLIN, (2026, 10, 25)) == [utc(2026, 10, 25, 0, 30)]
    assert ticks(spec, utc(2026, 10, 24), 3) == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


def test_a_gap_at_23_00_pushes_the_tick_past_local_midnight() -> None:
    # Nuuk, 28 March 2026: 23:00 -02 jumps to 00:00 -01, so 23:45 that evening does not exist;
    # read with the old offset it fires at 00:45 -01 on the 29th, even when asked from then.
    spec, nuuk = parse_spec(cron="45 23 * * *", tz="America/Nuuk"), ZoneInfo("America/Nuuk")
    after = datetime(2026, 3, 29, 0, 10, tzinfo=nuuk)
    assert next_tick(spec, after) == utc(2026, 3, 29, 1, 45)
    assert next_tick(spec, after).astimezone(nuuk).strftime("%d %H:%M") == "29 00:45"


def test_a_skipped_day_still_fires_once() -> None:
    # Samoa skipped 30 December 2011; its 12:00 is read with the old offset (-10).
    spec, apia = parse_spec(cron="0 12 30 12 *", tz="Pacific/Apia"), ZoneInfo("Pacific/Apia")
    assert next_tick(spec, datetime(2011, 12, 31, 0, 0, tzinfo=apia)) == utc(2011, 12, 30, 22)


def _brute(pred: Callable[[datetime], bool], tz: str, lo: datetime, hi: datetime) -> list[datetime]:
    """Every local minute matching ``pred``, read with fold=0, as a sorted set of instants."""
    zone, out = ZoneInfo(tz), set()
    c = lo.astimezone(zone).replace(tzinfo=None, minute=0, second=0) - timedelta(days=2)
    while c <= hi.astimezone(zone).replace(tzinfo=None) + timedelta(days=2):
        if pred(c) and lo < (t := c.replace(tzinfo=zone).astimezone(UTC)) <= hi:
            out.add(t)
        c += timedelta(minutes=1)
    return sorted(out)


@pytest.mark.parametrize(
    ("tz", "lo"),
    [
        (NY, utc(2026, 3, 7)),
        (NY, utc(2026, 10, 31)),
        (BERLIN, utc(2026, 3, 28)),
        ("Australia/Lord_Howe", utc(2026, 10, 3)),  # a 30-minute jump
        ("America/Santiago", utc(2026, 9, 5)),  # the jump happens at midnight
        ("Pacific/Apia", utc(2011, 12, 29)),  # Samoa skipped 30 December 2011 entirely
        ("America/Nuuk", utc(2026, 3, 27)),  # the jump is 23:00 -> 00:00
    ],
)
@pytest.mark.parametrize(
    ("cron", "pred"),
    [
        ("0 * * * *", lambda c: c.minute == 0),
        ("*/30 * * * *", lambda c: c.minute % 30 == 0),
        ("15,45 0-3 * * *", lambda c: c.minute in (15, 45) and c.hour <= 3),
        ("0 12 * * *", lambda c: (c.hour, c.minute) == (12, 0)),
        ("45 23 * * *", lambda c: (c.hour, c.minute) == (23, 45)),
    ],
)
def test_ticks_match_a_brute_force_reading_of_the_rule(
    tz: str, lo: datetime, cron: str, pred: Callable[[datetime], bool]
) -> None:
    spec, hi = parse_spec(cron=cron, tz=tz), lo + timedelta(days=3)
    want = _brute(pred, tz, lo, hi)
    assert ticks_between(spec, lo, hi, 10_000) == want
    assert count_ticks(spec, lo, hi) == len(want)
    assert latest_ticks(spec, lo, hi, 3) == want[-3:]
    for t in want:  # from any point, next_tick is the next of these instants
        for after in (t - timedelta(seconds=1), t, t + timedelta(minutes=20)):
            assert next_tick(spec, after) == next(
                (w for w in want if w > after), next_tick(spec, hi)
            )


def test_cron_agrees_with_croniter_in_utc() -> None:
    from croniter import croniter  # in the dev extra: a missing cross-check fails, never skips

    for expr in ("*/7 1-5 * * *", "0 9 * jan-mar,dec sun,sat", "0 0 13 * fri", "5/20 */3 1,15 * *"):
        start = utc(2026, 1, 1, 0, 3)
        it = croniter(expr, start)
        assert ticks(parse_spec(cron=expr), start, 50) == [it.get_next(datetime) for _ in range(50)]


# -- counting and windows -------------------------------------------------------------------


def test_ticks_between_count_and_latest() -> None:
    spec = parse_spec(every="60s")
    lo, hi = utc(2026, 1, 1, 12), utc(2026, 1, 1, 13)
    assert ticks_between(spec, lo, hi, 3) == [utc(2026, 1, 1, 12, m) for m in (1, 2, 3)]
    assert count_ticks(spec, lo, hi) == 60  # (lo, hi]: 12:01 .. 13:00
    assert latest_ticks(spec, lo, hi, 2) == [utc(2026, 1, 1, 12, 59), utc(2026, 1, 1, 13)]
    assert latest_ticks(spec, lo, hi, 100) == ticks_between(spec, lo, hi, 100)
    assert ticks_between(spec, hi, lo, 5) == [] and count_ticks(spec, hi, lo) == 0
    assert ticks_between(spec, lo, hi, 0) == [] and latest_ticks(spec, lo, hi, 0) == []
    with pytest.raises(ValueError, match="limit"):
        ticks_between(spec, lo, hi, -1)


def test_count_over_a_year_is_exact_and_fast() -> None:
    spec = parse_spec(cron="* * * * *", tz=NY)
    # 525,600 local minutes; the hour skipped in March collapses onto the next one.
    assert count_ticks(spec, utc(2026, 1, 1), utc(2027, 1, 1)) == 525_600 - 60
    daily = parse_spec(cron="0 0 * * *", tz=NY)
    assert latest_ticks(daily, utc(2020, 1, 1), utc(2026, 7, 4, 3), 1) == [utc(2026, 7, 3, 4)]


# -- plan -----------------------------------------------------------------------------------

MINUTE = parse_spec(every="60s")
T0 = utc(2026, 1, 1, 12)


def minutes(*ms: int) -> list[datetime]:
    return [T0 + timedelta(minutes=m) for m in ms]


@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_an_on_time_tick_fires_whatever_the_catch_up(catch_up: CatchUp) -> None:
    decided = plan(MINUTE, T0, T0 + timedelta(minutes=1, seconds=2), catch_up)
    assert decided.fire == minutes(1)
    assert (decided.missed, decided.missed_count) == ([], 0)
    assert decided.next_at == T0 + timedelta(minutes=2)


def test_nothing_due_fires_nothing() -> None:
    decided = plan(MINUTE, T0, T0 + timedelta(seconds=30), CatchUp.ALL)
    assert (decided.fire, decided.missed, decided.missed_count) == ([], [], 0)
    assert decided.next_at == T0 + timedelta(minutes=1)


def test_a_tick_exactly_grace_old_is_on_time() -> None:
    decided = plan(MINUTE, T0, T0 + timedelta(minutes=1, seconds=5), CatchUp.NONE)
    assert decided.fire == minutes(1)
    late = plan(MINUTE, T0, T0 + timedelta(minutes=1, seconds=5, microseconds=1), CatchUp.NONE)
    assert (late.fire, late.missed, late.missed_count) == ([], minutes(1), 1)


OUTAGE_NOW = T0 + timedelta(minutes=10, seconds=30)  # every scheduler was down ten minutes


@pytest.mark.parametrize(
    ("catch_up", "fire", "missed"),
    [
        (CatchUp.LATEST, [10], list(range(1, 10))),
        (CatchUp.ALL, list(range(1, 11)), []),
        (CatchUp.NONE, [], list(range(1, 11))),
    ],
)
def test_after_an_outage_late_ticks_follow_catch_up(
    catch_up: CatchUp, fire: list[int], missed: list[int]
) -> None:
    decided = plan(MINUTE, T0, OUTAGE_NOW, catch_up)
    assert decided.fire == minutes(*fire)
    assert decided.missed == minutes(*missed)
    assert decided.missed_count == len(missed)
    assert decided.next_at == T0 + timedelta(minutes=11)


@pytest.mark.parametrize(
    ("catch_up", "fire", "missed"),
    [
        (CatchUp.LATEST, [9, 10], list(range(1, 9))),
        (CatchUp.ALL, list(range(1, 11)), []),
        (CatchUp.NONE, [10], list(range(1, 10))),
    ],
)
def test_after_an_outage_the_on_time_tick_still_fires(
    catch_up: CatchUp, fire: list[int], missed: list[int]
) -> None:
    decided = plan(MINUTE, T0, T0 + timedelta(minutes=10, seconds=2), catch_up)  # 12:10 on time
    assert decided.fire == minutes(*fire)
    assert decided.missed == minutes(*missed)
    assert decided.missed_count == len(missed)


def test_all_is_bounded_by_max_fire() -> None:
    decided = plan(MINUTE, T0, OUTAGE_NOW, CatchUp.ALL, max_fire=4)
    assert decided.fire == minutes(1, 2, 3, 4)  # the oldest late ticks
    assert decided.missed == minutes(5, 6, 7, 8, 9, 10)
    assert decided.missed_count == 6


def test_missed_lists_the_most_recent_and_counts_them_all() -> None:
    now = T0 + timedelta(days=2, seconds=30)  # 2880 late ticks
    for catch_up in CatchUp:
        decided = plan(MINUTE, T0, now, catch_up, max_fire=50)
        fired = {CatchUp.LATEST: 1, CatchUp.ALL: 50, CatchUp.NONE: 0}[catch_up]
        assert len(decided.fire) == fired
        assert decided.missed_count == 2880 - fired
        assert len(decided.missed) == MISSED_LISTED
        assert max(decided.fire + decided.missed) == T0 + timedelta(days=2)  # newest due tick
        assert not set(decided.fire) & set(decided.missed)
    newest = plan(MINUTE, T0, now, CatchUp.NONE).missed
    assert newest == [T0 + timedelta(days=2, minutes=m - MISSED_LISTED) for m in range(1, 101)]


def test_a_new_schedule_never_fires_ticks_from_before_it_existed() -> None:
    created = T0 + timedelta(minutes=5, seconds=20)
    decided = plan(
        MINUTE, None, T0 + timedelta(minutes=8, seconds=30), CatchUp.ALL, created_at=created
    )
    assert decided.fire == minutes(6, 7, 8)  # 12:06 and 12:07 are late but after creation
    assert decided.missed_count == 0
    fresh = plan(MINUTE, None, T0 + timedelta(minutes=8, seconds=30), CatchUp.ALL)
    assert (fresh.fire, fresh.missed_count) == ([], 0)  # no created_at: only now - grace on
    just = plan(MINUTE, None, T0 + timedelta(minutes=8, seconds=3), CatchUp.ALL)
    assert just.fire == minutes(8)


def test_last_tick_wins_over_created_at() -> None:
    decided = plan(
        MINUTE,
        T0 + timedelta(minutes=8),
        OUTAGE_NOW,
        CatchUp.ALL,
        created_at=T0 - timedelta(days=1),
    )
    assert decided.fire == minutes(9, 10)


def test_plan_with_cron_across_fall_back() -> None:
    spec = parse_spec(cron="30 1 * * *", tz=NY)
    decided = plan(spec, utc(2026, 10, 29, 5, 30), utc(2026, 11, 1, 6, 40), CatchUp.ALL)
    assert decided.fire == [utc(2026, 10, 30, 5, 30), utc(2026, 10, 31, 5, 30)] + [
        utc(2026, 11, 1, 5, 30)
    ]
    assert decided.next_at == utc(2026, 11, 2, 6, 30)  # the repeated 01:30 EST is not a tick


def test_next_at_is_strictly_after_now() -> None:
    assert plan(MINUTE, T0, T0, CatchUp.ALL).next_at == T0 + timedelta(minutes=1)
    spec = parse_spec(cron="0 2 * * *", tz="Asia/Seoul")
    assert plan(spec, None, utc(2026, 6, 1, 17), CatchUp.LATEST).next_at == utc(2026, 6, 2, 17)


# -- time zones of the arguments ------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda naive: next_tick(MINUTE, naive),
        lambda naive: ticks_between(MINUTE, naive, T0, 5),
        lambda naive: ticks_between(MINUTE, T0, naive, 5),
        lambda naive: count_ticks(MINUTE, naive, T0),
        lambda naive: latest_ticks(MINUTE, T0, naive, 1),
        lambda naive: plan(MINUTE, None, naive, CatchUp.ALL),
        lambda naive: plan(MINUTE, naive, T0, CatchUp.ALL),
        lambda naive: plan(MINUTE, None, T0, CatchUp.ALL, created_at=naive),
    ],
)
def test_naive_datetimes_are_refused(call: Callable[[datetime], object]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call(datetime(2026, 1, 1, 12))


def test_other_offsets_are_accepted_and_answers_are_utc() -> None:
    seoul = datetime(2026, 6, 2, 2, 0, tzinfo=ZoneInfo("Asia/Seoul"))  # = 17:00 UTC on 1 June
    got = next_tick(parse_spec(every="1h"), seoul)
    assert got == utc(2026, 6, 1, 18) and got.tzinfo is UTC
