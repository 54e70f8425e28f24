"""Driver errors turned into Conveyor's typed errors at the store's edge."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as SATimeoutError

from conveyor.core.errors import ConfigurationError, DatabaseUnavailable, WriteRejected

F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(fn: F) -> F:
    """Driver connection failures become DatabaseUnavailable (the driver error in __cause__)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError, ProgrammingError, SATimeoutError) as exc:
            text = str(getattr(exc, "orig", exc)).lower()
            if "conveyor_" in text and ("no such table" in text or "does not exist" in text):
                raise ConfigurationError(
                    "Conveyor's tables are missing in this database; run `conveyor db upgrade`"
                ) from exc
            if isinstance(exc, ProgrammingError):
                raise
            if (
                isinstance(exc, DBAPIError)
                and not exc.connection_invalidated
                and not _is_connect(exc)
            ):
                raise
            raise DatabaseUnavailable(f"the database is unreachable: {_first_line(exc)}") from exc

    return wrapper  # type: ignore[return-value]


def _is_connect(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(
        marker in text
        for marker in ("connect", "connection", "server closed", "terminating", "unable to open")
    )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def rejections(fn: F) -> F:
    """Values the database refuses (a data or integrity error, text it cannot encode) become
    WriteRejected, so a caller can tell them from an outage and retry without them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataError, IntegrityError) as exc:
            raise WriteRejected(f"the database refused the values: {_first_line(exc)}") from exc
        except StatementError as exc:
            if isinstance(exc, DBAPIError) or not isinstance(exc.orig, ValueError | TypeError):
                raise
            raise WriteRejected(f"the values cannot be sent: {_first_line(exc)}") from exc
        except (ValueError, TypeError) as exc:  # encoding our own JSON documents
            raise WriteRejected(f"the values cannot be sent: {_first_line(exc)}") from exc

    return wrapper  # type: ignore[return-value]


def describe(exc: BaseException) -> str:
    """One line about a database error, without its SQL or parameters (for logs)."""
    return f"{type(exc).__name__}: {_first_line(exc)}"
