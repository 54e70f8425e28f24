"""Conveyor: asynchronous jobs for Python. PostgreSQL is the truth, Redis the fast path.

The names below are imported on first use (PEP 562): ``from conveyor import Conveyor`` works
as usual, while a process that needs only part of Conveyor (the ``conveyor`` command before
it knows which one, an isolated attempt's child) does not import SQLAlchemy and the rest for
nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.app import Conveyor, JobFunction, JobHandle
    from conveyor.client import EnqueueOptions, EnqueueRequest
    from conveyor.core.errors import (
        ConfigurationError,
        ConveyorError,
        DatabaseUnavailable,
        IdempotencyConflict,
        IllegalTransition,
        InvalidDuration,
        InvalidPayload,
        JobCanceled,
        JobNotFound,
        PayloadTooLarge,
        Permanent,
        UnknownJobType,
        WaitTimeout,
    )
    from conveyor.core.settings import Settings
    from conveyor.core.states import State
    from conveyor.core.views import AttemptView, JobView, Page
    from conveyor.worker.context import Context

#: The module each public name comes from.
_HOMES = {
    "conveyor.app": ("Conveyor", "JobFunction", "JobHandle"),
    "conveyor.client": ("EnqueueOptions", "EnqueueRequest"),
    "conveyor.core.errors": (
        "ConfigurationError",
        "ConveyorError",
        "DatabaseUnavailable",
        "IdempotencyConflict",
        "IllegalTransition",
        "InvalidDuration",
        "InvalidPayload",
        "JobCanceled",
        "JobNotFound",
        "PayloadTooLarge",
        "Permanent",
        "UnknownJobType",
        "WaitTimeout",
    ),
    "conveyor.core.settings": ("Settings",),
    "conveyor.core.states": ("State",),
    "conveyor.core.views": ("AttemptView", "JobView", "Page"),
    "conveyor.worker.context": ("Context",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "AttemptView",
    "ConfigurationError",
    "Context",
    "Conveyor",
    "ConveyorError",
    "DatabaseUnavailable",
    "EnqueueOptions",
    "EnqueueRequest",
    "IdempotencyConflict",
    "IllegalTransition",
    "InvalidDuration",
    "InvalidPayload",
    "JobCanceled",
    "JobFunction",
    "JobHandle",
    "JobNotFound",
    "JobView",
    "Page",
    "PayloadTooLarge",
    "Permanent",
    "Settings",
    "State",
    "UnknownJobType",
    "WaitTimeout",
]


def __getattr__(name: str) -> Any:
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
