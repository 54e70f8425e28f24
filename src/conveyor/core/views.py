"""What a job looks like from outside: plain data, returned by the client and the API."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from conveyor.core.states import TERMINAL, State


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
