"""The API's JSON errors turned back into the exception classes the Python client raises."""

from __future__ import annotations

from functools import cache
from typing import Any

# Imported for their ConveyorError subclasses: the code -> class table must hold them all.
import conveyor.core.names
import conveyor.core.schedule
import conveyor.core.storable  # noqa: F401
from conveyor.core.errors import ConveyorError


class Unauthorized(ConveyorError):
    """The API wants a valid bearer token (``token=``) and did not get one."""

    code = "unauthorized"


class Forbidden(ConveyorError):
    """The token may not do this (a read-only token asked for a change)."""

    code = "forbidden"


class ServerUnreachable(ConveyorError):
    """The Conveyor API could not be reached (connection refused, DNS, timeout)."""

    code = "server_unreachable"


class InvalidRequest(ConveyorError):
    """The API refused the request's shape (a field out of range, an unknown option)."""

    code = "validation_error"


def _subclasses(cls: type[ConveyorError]) -> list[type[ConveyorError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@cache
def _by_code() -> dict[str, type[ConveyorError]]:
    """Every ConveyorError subclass by its ``code`` (the first defined wins a shared code);
    built once, on the first error, when every module defining one is imported."""
    table: dict[str, type[ConveyorError]] = {}
    for cls in _subclasses(ConveyorError):
        table.setdefault(cls.code, cls)
    return table


def error_for(code: str, message: str, details: dict[str, Any]) -> ConveyorError:
    """The exception the Python client would have raised for this API error.

    Built without the class's own ``__init__`` (whose arguments differ per class) but with
    the same message and details; a detail the class keeps as an attribute (``errors``,
    ``state``) is set too. An unknown code gives a plain ConveyorError carrying that code.
    """
    cls = _by_code().get(code)
    if cls is None:
        exc = ConveyorError(message, **details)
        exc.code = code
        return exc
    exc = cls.__new__(cls)
    ConveyorError.__init__(exc, message, **details)
    for name, value in details.items():
        if not hasattr(cls, name):
            setattr(exc, name, value)
    return exc


def error_from_response(status: int, body: Any, url: str) -> ConveyorError:
    """An error response (``{"error": {"code", "message", "details"}}``) as an exception;
    a body of another shape (a proxy's HTML page) as a ConveyorError naming the status."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = error.get("details")
        message = str(error.get("message") or error["code"])
        return error_for(error["code"], message, details if isinstance(details, dict) else {})
    exc = ConveyorError(f"HTTP {status} from {url}", status=status)
    exc.code = f"http_{status}"
    return exc


def first_of_batch(exc: ConveyorError) -> ConveyorError:
    """A refused batch (``invalid_batch``) as its first refused job's error, as the Python
    client's ``enqueue_many`` raises it; the job's index is in its details."""
    problems = exc.details.get("errors")
    if exc.code != "invalid_batch" or not isinstance(problems, list) or not problems:
        return exc
    first = problems[0]
    details = dict(first.get("details") or {}, index=first.get("index"))
    return error_for(str(first.get("code")), str(first.get("message")), details)
