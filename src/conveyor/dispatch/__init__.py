"""Dispatch: the fast hand-off of job ids from producers to workers over Redis, and job-change
notices to event streams. Never the truth; the only package that speaks to Redis."""

from conveyor.dispatch.base import NO_EVENTS, NO_HANDOFF, Delivery, Events, Handoff

__all__ = ["NO_EVENTS", "NO_HANDOFF", "Delivery", "Events", "Handoff"]
