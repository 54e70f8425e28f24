"""parse_duration: numbers, timedeltas and unit strings to seconds; everything else rejected."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from conveyor.core.durations import parse_duration
from conveyor.core.errors import ConveyorError, InvalidDuration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (5, 5.0),
        (86400, 86400.0),
        (0.0, 0.0),
        (1.5, 1.5),
        (0.001, 0.001),
    ],
)
def test_numbers_are_seconds(value: float, expected: float) -> None:
    result = parse_duration(value)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(0), 0.0),
        (timedelta(seconds=90), 90.0),
        (timedelta(minutes=15), 900.0),
        (timedelta(days=1, hours=2), 93600.0),
        (timedelta(milliseconds=250), 0.25),
    ],
)
def test_timedelta_is_total_seconds(value: timedelta, expected: float) -> None:
    assert parse_duration(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("0s", 0.0),
        ("2H", 7200.0),
        ("  15m  ", 900.0),
    ],
)
def test_unit_strings(text: str, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" 5 ", 5.0), ("5", 5.0), ("0", 0.0), ("2.5", 2.5), ("\t10\n", 10.0)],
)
def test_numeric_strings_are_seconds(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


BAD = [
    "",
    "   ",
    "abc",
    "5x",
    "-1",
    "-5s",
    "1h30",
    "h",
    "1h 30m",
    "s5",
    "nan",
    "inf",
    "1e400",
    -1,
    -0.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    timedelta(seconds=-1),
    True,
    False,
    None,
    [],
    {},
    object(),
]


def _id(value: object) -> str:
    """A stable test id (an object's repr carries its address, which differs per process)."""
    return "object()" if type(value) is object else repr(value)


@pytest.mark.parametrize("value", BAD, ids=_id)
def test_rejects_non_durations(value: object) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD, ids=_id)
def test_error_names_the_argument(value: object) -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration(value, name="backoff_cap")  # type: ignore[arg-type]
    assert info.value.message.startswith("backoff_cap: ")


def test_default_name_is_duration() -> None:
    with pytest.raises(InvalidDuration, match=r"^duration: "):
        parse_duration("soon")


def test_invalid_duration_is_a_value_error_and_conveyor_error() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5x")
    assert isinstance(info.value, ConveyorError)
    assert info.value.code == "invalid_duration"


def test_text_error_shows_the_value_and_examples() -> None:
    with pytest.raises(InvalidDuration) as info:
        parse_duration("5x", name="timeout")
    assert "'5x'" in str(info.value)
    assert "15m" in str(info.value)


def test_large_finite_values_are_accepted() -> None:
    assert parse_duration(10**9) == 1e9
    assert parse_duration("100000d") == 100000 * 86400.0


def test_huge_int_raises_invalid_duration() -> None:
    with pytest.raises(InvalidDuration):
        parse_duration(10**400)


def test_results_are_finite() -> None:
    for value in (1, 2.5, "1h30m", timedelta(hours=1)):
        assert math.isfinite(parse_duration(value))
