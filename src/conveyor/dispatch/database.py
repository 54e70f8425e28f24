"""Database dispatch: workers claim from the jobs table, so there is nothing to push.

On PostgreSQL, job-change notices go out with NOTIFY for event streams to wake up at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Engine, text

from conveyor.dispatch.base import Delivery

CHANNEL = "conveyor_events"
NOTIFY_PAYLOAD_BYTES = 7900  # PostgreSQL's limit is 8000


class DatabaseDispatcher:
    delivers = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.notifies = engine.dialect.name == "postgresql"

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        return None

    def fetch(self, counts: Mapping[str, int], block_s: float) -> list[Delivery]:
        raise NotImplementedError("database dispatch has no fetch; claim from the store")

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        return None

    def depth(self, queue: str) -> int:
        return 0

    def reclaim(self, queue: str, idle_s: float) -> int:
        return 0

    def held(self, queue: str, limit: int) -> set[str]:
        return set()

    def publish(self, job_ids: Sequence[str]) -> None:
        if not self.notifies or not job_ids:
            return
        with self.engine.begin() as conn:
            for payload in _payloads(job_ids):
                conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})

    def may_have_listeners(self) -> bool:
        return self.notifies

    def close(self) -> None:
        return None


def _payloads(job_ids: Sequence[str]) -> list[str]:
    """Comma-separated ids, split to fit NOTIFY's payload limit."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for job_id in job_ids:
        if current and size + len(job_id) + 1 > NOTIFY_PAYLOAD_BYTES:
            out.append(",".join(current))
            current, size = [], 0
        current.append(job_id)
        size += len(job_id) + 1
    if current:
        out.append(",".join(current))
    return out
