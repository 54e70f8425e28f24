"""What a job looks like from outside: plain data, returned by the client and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from conveyor.core.states import CANCELABLE, RETRYABLE, TERMINAL, State


@dataclass(frozen=True, slots=True)
class AttemptView:
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class JobView:
    id: str
    type: str
    queue: str
    state: State
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    stage: str | None = None
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    worker_id: str | None = None
    timeout_s: float | None = None
    updated_at: datetime | None = None
    meta: dict[str, Any] | None = None  # Conveyor's own facts (trace context, webhook)
    attempts: list[AttemptView] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a keyset-paginated listing."""

    items: list[JobView]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a listing or a bulk action covers: every field given must match."""

    state: State | None = None
    type: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @property
    def empty(self) -> bool:
        """True when it matches every job."""
        return all(getattr(self, f.name) is None for f in fields(self))


class BulkAction(StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    DELETE = "delete"

    @property
    def sources(self) -> frozenset[State]:
        """The states a job must be in for this action to change it: the single-job rules
        (retry: failed or canceled; cancel: not yet terminal; delete: terminal only)."""
        return _BULK_SOURCES[self]


_BULK_SOURCES: dict[BulkAction, frozenset[State]] = {
    BulkAction.RETRY: RETRYABLE,
    BulkAction.CANCEL: CANCELABLE,
    BulkAction.DELETE: TERMINAL,
}


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What one bulk call did. ``more``: it stopped at its bound before the end of the
    matching jobs; call again with ``cursor`` to go on from the last job it looked at."""

    action: BulkAction
    changed: int
    more: bool = False
    cursor: str | None = None
