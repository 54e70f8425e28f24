"""decide(): the pure decision of a job's next state after an attempt; traceback capping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.core.errors import Permanent
from conveyor.core.outcome import (
    ERROR_MESSAGE_LIMIT,
    TRACEBACK_LIMIT_BYTES,
    Attempt,
    AttemptOutcome,
    Decision,
    ErrorInfo,
    cap_traceback,
    decide,
    decide_lost,
)
from conveyor.core.retry import RetryPolicy
from conveyor.core.states import State

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, base_s=2.0, cap_s=60.0)


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def error_attempt(exc: BaseException, outcome: AttemptOutcome = AttemptOutcome.ERROR) -> Attempt:
    return Attempt(outcome, error=ErrorInfo.from_exception(exc), exception=exc)


def run(attempt: Attempt, n: int, policy: RetryPolicy = POLICY, seed: int = 0) -> Decision:
    return decide(attempt, policy=policy, attempt_number=n, now=NOW, rng=random.Random(seed))


def test_outcome_values() -> None:
    assert {o.value for o in AttemptOutcome} == {
        "completed",
        "error",
        "timeout",
        "canceled",
        "worker_lost",
        "shutdown",
        "crashed",
    }


@pytest.mark.parametrize("n", [1, 4, 99])
def test_completed(n: int) -> None:
    d = run(Attempt(AttemptOutcome.COMPLETED, result={"ok": [1, 2]}), n)
    assert d.state is State.COMPLETED
    assert d.result == {"ok": [1, 2]}
    assert d.error is None
    assert d.run_at is None
    assert d.charges_attempt is True


@pytest.mark.parametrize("n", [1, 2, 3])
def test_error_with_attempts_left_retries_within_window(n: int) -> None:
    window = POLICY.backoff_window_s(n)
    for seed in range(50):
        d = run(error_attempt(ValueError("boom")), n, seed=seed)
        assert d.state is State.RETRYING
        assert d.run_at is not None
        assert NOW <= d.run_at <= NOW + timedelta(seconds=window)
        assert d.charges_attempt is True
        assert d.error is not None
        assert d.error.type == "ValueError"
        assert d.error.message == "boom"
        assert d.result is None


def test_retry_delay_uses_the_rng() -> None:
    att = error_attempt(ValueError("x"))
    a = run(att, 2, seed=5)
    b = run(att, 2, seed=5)
    assert a.run_at == b.run_at
    delays = {run(att, 3, seed=s).run_at for s in range(20)}
    assert len(delays) > 1


def test_retry_delay_equals_policy_backoff_for_same_rng() -> None:
    att = error_attempt(ValueError("x"))
    d = run(att, 3, seed=11)
    expected = POLICY.backoff_s(3, random.Random(11))
    assert d.run_at == NOW + timedelta(seconds=expected)


@pytest.mark.parametrize("n", [4, 5, 10])
def test_error_at_or_past_last_attempt_fails(n: int) -> None:
    d = run(error_attempt(ValueError("boom")), n)
    assert d.state is State.FAILED
    assert d.run_at is None
    assert d.error is not None and d.error.type == "ValueError"
    assert d.charges_attempt is True


def test_single_attempt_policy_fails_immediately() -> None:
    d = run(error_attempt(ValueError("x")), 1, policy=RetryPolicy(max_attempts=1))
    assert d.state is State.FAILED


def test_permanent_fails_at_first_attempt() -> None:
    d = run(error_attempt(Permanent("bad input")), 1)
    assert d.state is State.FAILED
    assert d.run_at is None
    assert d.error is not None
    assert d.error.type == "Permanent"
    assert d.error.message == "bad input"


def test_permanent_subclass_fails_even_if_in_retry_on() -> None:
    class BadInput(Permanent):
        pass

    policy = RetryPolicy(retry_on=(BadInput,))
    assert run(error_attempt(BadInput()), 1, policy=policy).state is State.FAILED


def test_dont_retry_on_fails() -> None:
    policy = RetryPolicy(max_attempts=5, dont_retry_on=(Fatal,))
    assert run(error_attempt(Fatal()), 1, policy=policy).state is State.FAILED
    assert run(error_attempt(Transient()), 1, policy=policy).state is State.RETRYING


def test_retry_on_mismatch_fails() -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=(Transient,))
    assert run(error_attempt(Fatal()), 1, policy=policy).state is State.FAILED
    assert run(error_attempt(Transient()), 1, policy=policy).state is State.RETRYING


@pytest.mark.parametrize(
    "outcome", [AttemptOutcome.TIMEOUT, AttemptOutcome.WORKER_LOST, AttemptOutcome.CRASHED]
)
def test_no_exception_outcomes_retried_by_policy(outcome: AttemptOutcome) -> None:
    # even with a retry_on filter: there is no exception to filter on
    policy = RetryPolicy(max_attempts=3, base_s=1.0, retry_on=(Transient,))
    info = ErrorInfo("TimeoutError", "took too long")
    first = run(Attempt(outcome, error=info), 1, policy=policy)
    assert first.state is State.RETRYING
    assert first.error == info
    assert first.run_at is not None
    assert NOW <= first.run_at <= NOW + timedelta(seconds=1.0)
    assert run(Attempt(outcome, error=info), 2, policy=policy).state is State.RETRYING
    last = run(Attempt(outcome, error=info), 3, policy=policy)
    assert last.state is State.FAILED
    assert last.run_at is None


@pytest.mark.parametrize("n", [1, 4, 10])
def test_canceled(n: int) -> None:
    info = ErrorInfo("JobCanceled", "canceled by user")
    d = run(Attempt(AttemptOutcome.CANCELED, error=info, exception=ValueError()), n)
    assert d.state is State.CANCELED
    assert d.error == info
    assert d.run_at is None


@pytest.mark.parametrize("n", [1, 4, 10])
def test_shutdown_requeues_without_charging(n: int) -> None:
    info = ErrorInfo("Shutdown", "worker stopping")
    d = run(Attempt(AttemptOutcome.SHUTDOWN, error=info), n)
    assert d.state is State.QUEUED
    assert d.charges_attempt is False
    assert d.error == info
    assert d.run_at is None


def test_decide_without_rng() -> None:
    d = decide(error_attempt(ValueError()), policy=POLICY, attempt_number=1, now=NOW)
    assert d.state is State.RETRYING
    assert d.run_at is not None
    assert NOW <= d.run_at <= NOW + timedelta(seconds=POLICY.backoff_window_s(1))


# -- a run whose worker died --------------------------------------------------------------


def lost(n: int, *, cancel_requested: bool = False, policy: RetryPolicy = POLICY) -> Decision:
    return decide_lost(
        "w-1",
        policy=policy,
        attempt_number=n,
        now=NOW,
        cancel_requested=cancel_requested,
        rng=random.Random(0),
    )


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_lost_run_with_attempts_left_retries(n: int) -> None:
    d = lost(n)
    assert d.state is State.RETRYING
    assert d.run_at is not None
    assert NOW <= d.run_at <= NOW + timedelta(seconds=POLICY.backoff_window_s(n))
    assert d.charges_attempt is True
    assert d.error == ErrorInfo("WorkerLost", "worker w-1 stopped renewing its lease")


@pytest.mark.parametrize("n", [4, 5])
def test_a_lost_run_on_its_last_attempt_fails(n: int) -> None:
    d = lost(n)
    assert d.state is State.FAILED
    assert d.run_at is None
    assert d.error == ErrorInfo("WorkerLost", "worker w-1 stopped renewing its lease")


def test_a_lost_run_is_retried_whatever_the_policy_filters() -> None:
    # there is no exception for retry_on to match: a lost worker is retried by count alone
    policy = RetryPolicy(max_attempts=2, base_s=1.0, retry_on=(Transient,))
    assert lost(1, policy=policy).state is State.RETRYING
    assert lost(2, policy=policy).state is State.FAILED


@pytest.mark.parametrize("n", [1, 4, 99])
def test_a_lost_run_being_canceled_ends_canceled(n: int) -> None:
    d = lost(n, cancel_requested=True)
    assert d.state is State.CANCELED
    assert d.run_at is None
    assert d.charges_attempt is True
    assert d.error == ErrorInfo("Canceled", "canceled")


# -- tracebacks -------------------------------------------------------------------------------


def test_limit_is_16_kib() -> None:
    assert TRACEBACK_LIMIT_BYTES == 16 * 1024


def test_short_text_unchanged() -> None:
    assert cap_traceback("short") == "short"
    exact = "a" * TRACEBACK_LIMIT_BYTES
    assert cap_traceback(exact) == exact
    assert cap_traceback("") == ""


def test_long_ascii_keeps_the_end() -> None:
    text = "HEAD" + "x" * 40_000 + "the error is here"
    capped = cap_traceback(text)
    assert len(capped.encode()) <= TRACEBACK_LIMIT_BYTES
    assert len(capped.encode()) > TRACEBACK_LIMIT_BYTES - 8
    assert capped.endswith("the error is here")
    assert "HEAD" not in capped
    assert capped.startswith("...(truncated)...")
    assert text.endswith(capped.split("\n", 1)[1])


@pytest.mark.parametrize("char", ["é", "€", "日", "😀"])
@pytest.mark.parametrize("pad", [0, 1, 2, 3])
def test_multibyte_stays_within_limit_and_valid(char: str, pad: int) -> None:
    text = "START" + char * 10_000 + "a" * pad + "END"
    assert len(text.encode()) > TRACEBACK_LIMIT_BYTES
    capped = cap_traceback(text)
    data = capped.encode("utf-8")  # strict: no broken characters
    assert len(data) <= TRACEBACK_LIMIT_BYTES
    assert len(data) > TRACEBACK_LIMIT_BYTES - 8
    assert capped.endswith(char + "a" * pad + "END")
    assert "START" not in capped
    assert "\ufffd" not in capped
    body = capped.split("\n", 1)[1]
    assert text.endswith(body)


def test_custom_limit() -> None:
    capped = cap_traceback("0123456789" * 20, limit=50)
    assert len(capped.encode()) <= 50
    assert capped.endswith("789")


@pytest.mark.parametrize("limit", [10, 18])
def test_tiny_limit_still_respected(limit: int) -> None:
    capped = cap_traceback("x" * 100, limit=limit)
    assert len(capped.encode()) <= limit


def test_error_info_from_raised_exception() -> None:
    def fail() -> None:
        raise KeyError("missing-key")

    try:
        fail()
    except KeyError as exc:
        info = ErrorInfo.from_exception(exc)
    assert info.type == "KeyError"
    assert info.message == "'missing-key'"
    assert info.traceback is not None
    assert info.traceback.startswith("Traceback (most recent call last)")
    assert "in fail" in info.traceback
    assert info.traceback.rstrip().endswith("KeyError: 'missing-key'")
    assert info.as_dict() == {
        "type": "KeyError",
        "message": "'missing-key'",
        "traceback": info.traceback,
    }


def test_error_info_from_unraised_exception_and_subclass_name() -> None:
    info = ErrorInfo.from_exception(Transient("nope"))
    assert info.type == "Transient"
    assert info.message == "nope"
    assert info.traceback is not None
    assert "Transient: nope" in info.traceback


def test_error_info_caps_huge_messages_and_tracebacks() -> None:
    info = ErrorInfo.from_exception(ValueError("head" + "ü" * 50_000 + "tail"))
    assert info.traceback is not None
    assert len(info.traceback.encode()) <= TRACEBACK_LIMIT_BYTES
    assert "ValueError: headüü" in info.traceback
    assert info.traceback.rstrip().endswith("(truncated)")
    assert info.message.startswith("head") and len(info.message) == ERROR_MESSAGE_LIMIT


def test_error_info_keeps_the_frames_of_a_raised_error() -> None:
    def handler() -> None:
        raise ValueError("x" * 50_000)

    try:
        handler()
    except ValueError as exc:
        info = ErrorInfo.from_exception(exc)
    # Each part of the traceback is cut on its own: the frames survive a huge message.
    assert info.traceback is not None and "in handler" in info.traceback


def test_error_info_default_traceback() -> None:
    info = ErrorInfo("T", "m")
    assert info.traceback is None
    assert info.as_dict() == {"type": "T", "message": "m", "traceback": None}
