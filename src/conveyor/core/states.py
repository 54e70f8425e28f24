"""Job states, the sets derived from them, and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum

from conveyor.core.errors import IllegalTransition


class State(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL: frozenset[State] = frozenset({State.COMPLETED, State.FAILED, State.CANCELED})
WAITING: frozenset[State] = frozenset({State.SCHEDULED, State.RETRYING})
ACTIVE: frozenset[State] = frozenset(State) - TERMINAL
CANCELABLE: frozenset[State] = ACTIVE
RETRYABLE: frozenset[State] = frozenset({State.FAILED, State.CANCELED})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.QUEUED, State.CANCELED}),
    State.QUEUED: frozenset({State.RUNNING, State.CANCELED}),
    # running -> queued: graceful shutdown hands the job back without charging an attempt.
    State.RUNNING: frozenset(
        {State.COMPLETED, State.FAILED, State.RETRYING, State.CANCELED, State.QUEUED}
    ),
    State.RETRYING: frozenset({State.QUEUED, State.CANCELED}),
    # Terminal states change only by an explicit retry.
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset({State.QUEUED}),
    State.CANCELED: frozenset({State.QUEUED}),
}


def can_transition(src: State, dst: State) -> bool:
    return dst in TRANSITIONS[src]


def sources_of(dst: State) -> frozenset[State]:
    """Every state from which ``dst`` may legally be entered."""
    return frozenset(src for src, dsts in TRANSITIONS.items() if dst in dsts)


def check_transition(job_id: str, src: State, dst: State) -> None:
    if not can_transition(src, dst):
        raise IllegalTransition(job_id, src.value, dst.value)
