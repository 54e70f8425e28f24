"""One exception tree: every failure a caller can act on has a class and a stable code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ConveyorError(Exception):
    """Conveyor failed."""

    code = "conveyor_error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.details = details

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigurationError(ConveyorError):
    """A setting is missing or invalid."""

    code = "configuration_error"


class UnknownJobType(ConveyorError):
    """No job type is registered under this name."""

    code = "unknown_job_type"

    def __init__(self, name: str, known: Sequence[str]) -> None:
        known_list = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown job type {name!r}; known types: {known_list}",
            type=name,
            known=sorted(known),
        )


class InvalidPayload(ConveyorError):
    """The payload does not fit the job type's schema."""

    code = "invalid_payload"

    def __init__(self, job_type: str, errors: list[dict[str, Any]]) -> None:
        fields = "; ".join(f"{e['field'] or '(payload)'}: {e['message']}" for e in errors)
        super().__init__(f"invalid payload for {job_type!r}: {fields}", errors=errors)
        self.errors = errors


class PayloadTooLarge(ConveyorError):
    """The payload or result is larger than allowed."""

    code = "payload_too_large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes", size=size, limit=limit
        )


class IdempotencyConflict(ConveyorError):
    """The idempotency key is already used by a job with a different payload."""

    code = "idempotency_conflict"

    def __init__(self, key: str, existing_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} is already used by job {existing_id} with a different "
            "type or payload",
            idempotency_key=key,
            job_id=existing_id,
        )


class IllegalTransition(ConveyorError):
    """The job is in a state that does not allow this change."""

    code = "illegal_transition"

    def __init__(self, job_id: str, state: str, target: str) -> None:
        super().__init__(
            f"job {job_id} is {state}; it cannot become {target}",
            job_id=job_id,
            state=state,
            target=target,
        )
        self.state = state


class JobNotFound(ConveyorError):
    """No job has this id."""

    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id}", job_id=job_id)


class InvalidBulkRequest(ConveyorError):
    """The bulk action or its filter is not acceptable; nothing was changed."""

    code = "invalid_bulk_request"


class DatabaseUnavailable(ConveyorError):
    """The database cannot be reached; nothing was written."""

    code = "database_unavailable"


class WriteRejected(ConveyorError):
    """The database refused the values of a write (a connection problem is not this)."""

    code = "write_rejected"


class ScheduleNotFound(ConveyorError):
    """No schedule has this name."""

    code = "schedule_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}", name=name)


class ScheduleConflict(ConveyorError):
    """The schedule cannot be changed this way."""

    code = "schedule_conflict"


class InvalidDuration(ConveyorError, ValueError):
    """A duration is not a number of seconds or a string such as '15m'."""

    code = "invalid_duration"


class WaitTimeout(ConveyorError, TimeoutError):
    """The job did not reach a terminal state in time."""

    code = "wait_timeout"


class Permanent(Exception):  # noqa: N818 - the public name reads better without "Error"
    """Raised by a handler for an error that must not be retried."""


class JobCanceled(Exception):  # noqa: N818
    """Raised inside a handler's ``ctx`` calls once the job was canceled."""
