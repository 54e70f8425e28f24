"""Dispatch: the fast hand-off of job ids from producers to workers. Never the truth."""

from conveyor.dispatch.base import Delivery, Dispatcher
from conveyor.dispatch.database import DatabaseDispatcher

__all__ = ["DatabaseDispatcher", "Delivery", "Dispatcher"]
