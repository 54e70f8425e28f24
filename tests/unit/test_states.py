"""The job lifecycle: properties of the one transition table in core/states.py and of the sets
derived from it.

Nothing here copies the table: each test states a rule the table must obey (a terminal state is
left only by an explicit retry, every waiting job can end, an attempt ends in a state `decide`
can choose), so a change to the table that breaks a promise fails here, and one that keeps them
needs no second edit. What the code does with the table is shown against the database in
tests/integration/test_one_outcome.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import pytest

from conveyor.core.errors import ConveyorError, IllegalTransition, Permanent
from conveyor.core.outcome import Attempt, AttemptOutcome, ErrorInfo, decide
from conveyor.core.retry import RetryPolicy
from conveyor.core.states import (
    ACTIVE,
    CANCELABLE,
    RETRYABLE,
    TERMINAL,
    TRANSITIONS,
    WAITING,
    State,
    can_transition,
    check_transition,
    sources_of,
)

S = State
ALL_PAIRS = list(itertools.product(State, State))
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]
#: The states an enqueue creates a job in (``scheduled`` when it is due later).
ENTRY = frozenset({S.SCHEDULED, S.QUEUED})
Table = Mapping[State, frozenset[State]]


def reachable(start: Iterable[State], table: Table = TRANSITIONS) -> frozenset[State]:
    """Every state some path of ``table`` leads to from ``start`` (``start`` included)."""
    seen = set(start)
    todo = list(seen)
    while todo:
        for dst in table[todo.pop()]:
            if dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return frozenset(seen)


def without_retries(table: Table = TRANSITIONS) -> dict[State, frozenset[State]]:
    """The table without the explicit retries (the ways out of a terminal state)."""
    return {src: frozenset() if src in TERMINAL else dsts for src, dsts in table.items()}


def test_state_values_are_what_the_database_and_api_hold() -> None:
    # stored in conveyor_jobs.state and shown by the API: a rename is a migration
    assert [s.value for s in State] == [
        "scheduled",
        "queued",
        "running",
        "retrying",
        "completed",
        "failed",
        "canceled",
    ]
    assert State("running") is State.RUNNING
    assert State.RUNNING == "running"


def test_every_state_has_a_row_and_no_row_loops() -> None:
    assert set(TRANSITIONS) == set(State)
    for src, dsts in TRANSITIONS.items():
        assert isinstance(dsts, frozenset)
        assert src not in dsts


def test_sets_partition_and_nest() -> None:
    assert frozenset(State) == TERMINAL | ACTIVE
    assert not TERMINAL & ACTIVE
    assert WAITING <= ACTIVE
    assert RETRYABLE <= TERMINAL
    assert ENTRY <= ACTIVE


# -- one outcome -----------------------------------------------------------------------------


@pytest.mark.parametrize("src", sorted(TERMINAL))
def test_a_terminal_state_is_left_only_by_an_explicit_retry(src: State) -> None:
    assert TRANSITIONS[src] <= {S.QUEUED}
    assert bool(TRANSITIONS[src]) is (src in RETRYABLE)


def test_terminal_states_are_exactly_those_left_only_for_the_queue() -> None:
    # every active state still has somewhere to go other than back to the queue
    assert frozenset(s for s in State if TRANSITIONS[s] <= {S.QUEUED}) == TERMINAL


def test_without_retries_a_terminal_state_is_final() -> None:
    # so a run (enqueue or retry, up to a terminal state) makes at most one terminal transition
    table = without_retries()
    for src in TERMINAL:
        assert reachable([src], table) == {src}


def test_every_run_can_end_and_every_state_is_used() -> None:
    table = without_retries()
    for src in ACTIVE:
        assert reachable([src], table) & TERMINAL, f"a {src} job could never end"
    assert reachable(ENTRY) == frozenset(State)


def test_a_run_starts_only_by_a_claim() -> None:
    assert sources_of(S.RUNNING) == {S.QUEUED}


def test_only_an_attempt_decides_completed_failed_or_retrying() -> None:
    for dst in (S.COMPLETED, S.FAILED, S.RETRYING):
        assert sources_of(dst) == {S.RUNNING}


def _decided(policy: RetryPolicy) -> set[State]:
    """Every state decide() sends a job to after an attempt: each outcome, with attempts left
    and without, from a retryable error and from a Permanent one."""
    now = datetime(2024, 5, 1, tzinfo=UTC)
    found = set()
    for outcome, number, exc in itertools.product(
        AttemptOutcome, (1, policy.max_attempts), (None, ValueError("x"), Permanent("x"))
    ):
        attempt = Attempt(outcome, error=ErrorInfo("E", "x"), exception=exc)
        found.add(decide(attempt, policy=policy, attempt_number=number, now=now).state)
    return found


def test_an_attempt_ends_in_exactly_the_states_the_table_allows_from_running() -> None:
    assert _decided(RetryPolicy(max_attempts=3)) == TRANSITIONS[S.RUNNING]


def test_the_queue_is_entered_by_promotion_hand_back_or_explicit_retry() -> None:
    assert sources_of(S.QUEUED) == WAITING | {S.RUNNING} | RETRYABLE


# -- the derived sets ------------------------------------------------------------------------


def test_waiting_states_wait_for_the_queue() -> None:
    assert frozenset(ACTIVE - {S.QUEUED, S.RUNNING}) == WAITING
    for src in WAITING:
        assert TRANSITIONS[src] == {S.QUEUED, S.CANCELED}


def test_cancelable_states_are_the_active_ones() -> None:
    assert frozenset(s for s in State if can_transition(s, S.CANCELED)) == CANCELABLE == ACTIVE


def test_retryable_states_are_the_terminal_ones_with_a_way_back() -> None:
    assert frozenset(s for s in TERMINAL if can_transition(s, S.QUEUED)) == RETRYABLE
    assert S.COMPLETED not in RETRYABLE


# -- the functions read the table -------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS)
def test_can_transition_reads_the_table(src: State, dst: State) -> None:
    assert can_transition(src, dst) is (dst in TRANSITIONS[src])


@pytest.mark.parametrize(("src", "dst"), LEGAL)
def test_check_transition_allows_legal(src: State, dst: State) -> None:
    assert check_transition("job-1", src, dst) is None


@pytest.mark.parametrize(("src", "dst"), ILLEGAL)
def test_check_transition_rejects_illegal(src: State, dst: State) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("job-42", src, dst)
    err = info.value
    assert isinstance(err, ConveyorError)
    assert err.code == "illegal_transition"
    assert src.value in err.message
    assert dst.value in err.message
    assert "job-42" in err.message
    assert err.state == src.value
    assert err.details == {"job_id": "job-42", "state": src.value, "target": dst.value}


def test_illegal_transition_message_reads_well() -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("abc", S.COMPLETED, S.RUNNING)
    assert str(info.value) == "job abc is completed; it cannot become running"


@pytest.mark.parametrize("dst", list(State))
def test_sources_of_inverts_the_table(dst: State) -> None:
    assert sources_of(dst) == frozenset(src for src in State if dst in TRANSITIONS[src])
