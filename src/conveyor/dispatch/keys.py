"""Every Redis key name Conveyor uses, in one place."""

from __future__ import annotations

GROUP = "workers"


def queue_stream(prefix: str, queue: str) -> str:
    return f"{prefix}:queue:{queue}"


def epoch(prefix: str) -> str:
    """Set once per Redis lifetime; its absence tells the reconciler Redis lost its data."""
    return f"{prefix}:epoch"


def events_channel(prefix: str, job_id: str) -> str:
    return f"{prefix}:events:{job_id}"
