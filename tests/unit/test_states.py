"""The job lifecycle: one table of legal transitions and the sets derived from it."""

from __future__ import annotations

import itertools

import pytest

from conveyor.core.errors import ConveyorError, IllegalTransition
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

DOCUMENTED: dict[State, set[State]] = {
    S.SCHEDULED: {S.QUEUED, S.CANCELED},
    S.QUEUED: {S.RUNNING, S.CANCELED},
    S.RUNNING: {S.COMPLETED, S.FAILED, S.RETRYING, S.CANCELED, S.QUEUED},
    S.RETRYING: {S.QUEUED, S.CANCELED},
    S.COMPLETED: set(),
    S.FAILED: {S.QUEUED},
    S.CANCELED: {S.QUEUED},
}

ALL_PAIRS = list(itertools.product(State, State))


def test_state_values() -> None:
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


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State)


def test_table_matches_documented_lifecycle() -> None:
    assert {src: set(dsts) for src, dsts in TRANSITIONS.items()} == DOCUMENTED


def test_no_state_transitions_to_itself() -> None:
    for src, dsts in TRANSITIONS.items():
        assert src not in dsts


def test_completed_is_final() -> None:
    assert TRANSITIONS[S.COMPLETED] == frozenset()
    for dst in State:
        assert not can_transition(S.COMPLETED, dst)


@pytest.mark.parametrize("src", [S.FAILED, S.CANCELED])
def test_failed_and_canceled_only_go_back_to_queued(src: State) -> None:
    assert TRANSITIONS[src] == frozenset({S.QUEUED})


def test_sets() -> None:
    assert frozenset({S.COMPLETED, S.FAILED, S.CANCELED}) == TERMINAL
    assert frozenset({S.SCHEDULED, S.QUEUED, S.RUNNING, S.RETRYING}) == ACTIVE
    assert frozenset({S.SCHEDULED, S.RETRYING}) == WAITING
    assert CANCELABLE == ACTIVE
    assert frozenset({S.FAILED, S.CANCELED}) == RETRYABLE


def test_sets_partition_and_nest() -> None:
    assert frozenset(State) == TERMINAL | ACTIVE
    assert not TERMINAL & ACTIVE
    assert WAITING <= ACTIVE
    assert RETRYABLE <= TERMINAL


def test_every_active_state_can_be_canceled() -> None:
    for src in CANCELABLE:
        assert can_transition(src, S.CANCELED)
    for src in TERMINAL:
        assert not can_transition(src, S.CANCELED)


def test_retryable_states_can_be_requeued() -> None:
    for src in RETRYABLE:
        assert can_transition(src, S.QUEUED)
    assert not can_transition(S.COMPLETED, S.QUEUED)


def test_only_running_reaches_outcomes() -> None:
    for dst in (S.COMPLETED, S.FAILED, S.RETRYING):
        assert sources_of(dst) == frozenset({S.RUNNING})


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS)
def test_can_transition_agrees_with_table(src: State, dst: State) -> None:
    assert can_transition(src, dst) is (dst in DOCUMENTED[src])


@pytest.mark.parametrize(("src", "dst"), [(a, b) for a, b in ALL_PAIRS if b in DOCUMENTED[a]])
def test_check_transition_allows_legal(src: State, dst: State) -> None:
    assert check_transition("job-1", src, dst) is None


@pytest.mark.parametrize(("src", "dst"), [(a, b) for a, b in ALL_PAIRS if b not in DOCUMENTED[a]])
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
def test_sources_of_inverts_table(dst: State) -> None:
    expected = frozenset(src for src, dsts in DOCUMENTED.items() if dst in dsts)
    assert sources_of(dst) == expected


def test_sources_of_examples() -> None:
    assert sources_of(S.QUEUED) == frozenset(
        {S.SCHEDULED, S.RUNNING, S.RETRYING, S.FAILED, S.CANCELED}
    )
    assert sources_of(S.RUNNING) == frozenset({S.QUEUED})
    assert sources_of(S.SCHEDULED) == frozenset()
    assert sources_of(S.CANCELED) == ACTIVE
