"""Every Redis key name Conveyor uses, in one place."""

from __future__ import annotations

GROUP = "workers"


def queue_stream(prefix: str, queue: str) -> str:
    return f"{prefix}:queue:{queue}"


def events_channel(prefix: str) -> str:
    """Pub/sub channel carrying the ids of jobs that just changed (state or progress)."""
    return f"{prefix}:events"
