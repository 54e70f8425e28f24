"""Worker rows: who is alive, what they serve, when they last said so."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update

from conveyor.store.errors import translate_errors
from conveyor.store.tables import workers

#: A worker is alive while it has been heard from within this many heartbeats.
ALIVE_HEARTBEATS = 3


def alive_since(now: datetime, heartbeat_s: float) -> datetime:
    """The oldest heartbeat of a worker still counted alive at ``now``: the one rule for
    /workers, /queues, the dashboard and the reconciler."""
    return now - timedelta(seconds=ALIVE_HEARTBEATS * heartbeat_s)


class WorkerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def register(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        queues: Mapping[str, int],
        concurrency: int,
        now: datetime,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))
            conn.execute(
                workers.insert().values(
                    id=worker_id,
                    host=host,
                    pid=pid,
                    queues=dict(queues),
                    concurrency=concurrency,
                    in_flight=0,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def beat(
        self, worker_id: str, in_flight: int, now: datetime, problem: str | None = None
    ) -> None:
        """``problem``: why the worker cannot make full progress (None: healthy)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(workers)
                .where(workers.c.id == worker_id)
                .values(heartbeat_at=now, in_flight=in_flight, problem=problem)
            )

    def stop(self, worker_id: str, now: datetime, problem: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(workers)
                .where(workers.c.id == worker_id)
                .values(stopped_at=now, in_flight=0, heartbeat_at=now, problem=problem)
            )

    @translate_errors
    def serving(self, since: datetime) -> set[str]:
        """The queues some worker alive since ``since`` serves (see ``alive_since``)."""
        return {q for worker in self.alive(since) for q in worker["queues"]}

    @translate_errors
    def alive(self, since: datetime) -> list[dict[str, Any]]:
        query = (
            select(workers)
            .where(workers.c.heartbeat_at >= since, workers.c.stopped_at.is_(None))
            .order_by(workers.c.started_at)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    @translate_errors
    def recent(self, since: datetime, limit: int = 500) -> list[dict[str, Any]]:
        """Workers heard from since ``since``, stopped ones included, newest heartbeat first
        (the dashboard fades the dead out rather than hiding them at once)."""
        query = (
            select(workers)
            .where(workers.c.heartbeat_at >= since)
            .order_by(workers.c.heartbeat_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
