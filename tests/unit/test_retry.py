"""RetryPolicy: capped exponential backoff with full jitter, and exception filters."""

from __future__ import annotations

import random
import statistics

import pytest

from conveyor.core.retry import RetryPolicy


class Transient(Exception):
    pass


class Flaky(Transient):
    pass


class Fatal(Exception):
    pass


def test_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 4
    assert p.base_s == 1.0
    assert p.cap_s == 300.0
    assert p.retry_on == ()
    assert p.dont_retry_on == ()


def test_window_doubles_from_base() -> None:
    p = RetryPolicy(base_s=2.0, cap_s=10_000.0)
    assert [p.backoff_window_s(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]


def test_window_is_capped() -> None:
    p = RetryPolicy(base_s=1.0, cap_s=300.0)
    windows = [p.backoff_window_s(n) for n in range(1, 20)]
    assert windows[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert all(w == 300.0 for w in windows[9:])
    assert windows == sorted(windows)


def test_window_never_overflows_for_huge_attempts() -> None:
    p = RetryPolicy(base_s=1.0, cap_s=60.0)
    assert p.backoff_window_s(10_000) == 60.0
    assert p.backoff_window_s(10**9) == 60.0


def test_window_for_attempt_zero_or_negative_is_base() -> None:
    p = RetryPolicy(base_s=3.0)
    assert p.backoff_window_s(0) == 3.0
    assert p.backoff_window_s(-5) == 3.0


def test_cap_below_base_wins() -> None:
    p = RetryPolicy(base_s=10.0, cap_s=4.0)
    assert p.backoff_window_s(1) == 4.0


def test_zero_base_means_no_delay() -> None:
    p = RetryPolicy(base_s=0.0)
    rng = random.Random(1)
    assert p.backoff_window_s(5) == 0.0
    assert all(p.backoff_s(n, rng) == 0.0 for n in range(1, 10))


def test_window_is_float() -> None:
    assert type(RetryPolicy(base_s=1, cap_s=5).backoff_window_s(2)) is float


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 9, 12])
def test_backoff_within_window_and_spreads(attempt: int) -> None:
    p = RetryPolicy(base_s=1.0, cap_s=300.0)
    window = p.backoff_window_s(attempt)
    rng = random.Random(1234 + attempt)
    draws = [p.backoff_s(attempt, rng) for _ in range(2000)]
    assert all(0.0 <= d <= window for d in draws)
    # full jitter: uniform over the whole window, not a narrow band near it
    assert min(draws) < 0.02 * window
    assert max(draws) > 0.98 * window
    assert statistics.fmean(draws) == pytest.approx(window / 2, rel=0.08)
    assert len(set(draws)) > 1900


def test_backoff_is_reproducible_with_seed() -> None:
    p = RetryPolicy()
    a = [p.backoff_s(3, random.Random(7)) for _ in range(3)]
    b = [p.backoff_s(3, random.Random(7)) for _ in range(3)]
    assert a == b
    r1, r2 = random.Random(99), random.Random(99)
    assert [p.backoff_s(n, r1) for n in range(1, 10)] == [p.backoff_s(n, r2) for n in range(1, 10)]


def test_backoff_without_rng_uses_module_random() -> None:
    p = RetryPolicy(base_s=4.0)
    draws = [p.backoff_s(2) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert len(set(draws)) > 1


def test_retries_everything_by_default() -> None:
    p = RetryPolicy()
    assert p.retries(Exception("x"))
    assert p.retries(ValueError("x"))
    assert p.retries(KeyboardInterrupt())


def test_retry_on_limits_to_listed_classes_and_subclasses() -> None:
    p = RetryPolicy(retry_on=(Transient, TimeoutError))
    assert p.retries(Transient())
    assert p.retries(Flaky())
    assert p.retries(TimeoutError())
    assert not p.retries(Fatal())
    assert not p.retries(ValueError())


def test_dont_retry_on_excludes_classes_and_subclasses() -> None:
    p = RetryPolicy(dont_retry_on=(Transient,))
    assert not p.retries(Transient())
    assert not p.retries(Flaky())
    assert p.retries(Fatal())


def test_dont_retry_on_wins_over_retry_on() -> None:
    p = RetryPolicy(retry_on=(Transient,), dont_retry_on=(Flaky,))
    assert p.retries(Transient())
    assert not p.retries(Flaky())
    assert not p.retries(Fatal())
    both = RetryPolicy(retry_on=(Fatal,), dont_retry_on=(Fatal,))
    assert not both.retries(Fatal())


@pytest.mark.parametrize("n", [0, -1, -100])
def test_invalid_max_attempts(n: int) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=n)


def test_one_attempt_is_allowed() -> None:
    assert RetryPolicy(max_attempts=1).max_attempts == 1


@pytest.mark.parametrize(("base", "cap"), [(-1.0, 10.0), (1.0, -1.0)])
def test_negative_backoff_rejected(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        RetryPolicy(base_s=base, cap_s=cap)


def test_policy_is_frozen() -> None:
    p = RetryPolicy()
    with pytest.raises(AttributeError):
        p.max_attempts = 9  # type: ignore[misc]
