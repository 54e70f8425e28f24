"""Dispatch: the fast hand-off of job ids from producers to workers. Never the truth."""

from conveyor.dispatch.base import Delivery, Dispatcher, NullDispatcher

__all__ = ["Delivery", "Dispatcher", "NullDispatcher"]
