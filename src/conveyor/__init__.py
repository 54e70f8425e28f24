"""Conveyor: asynchronous jobs for Python. PostgreSQL is the truth, Redis the fast path."""

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
