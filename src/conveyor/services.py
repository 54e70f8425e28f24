"""Process wiring: the one place that chooses Redis or database delivery and builds the parts
every process runs on — the engine, the stores, the database's clock, the hand-off, the
event notices, and for workers the source of their next jobs.

Each process builds one ``Services`` (``Services.build``) and passes its parts to the
objects it runs: the client, a worker, the scheduler, the reconciler, the HTTP API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.core.settings import Settings
from conveyor.delivery import Source
from conveyor.delivery.database import DatabaseSource, Wakeup
from conveyor.dispatch.base import NO_EVENTS, NO_HANDOFF, Events, Handoff
from conveyor.dispatch.doorbell import Doorbell, DoorbellListener, doorbell_dir
from conveyor.store import (
    ClaimStore,
    Engine,
    JobStore,
    RunStore,
    UpkeepStore,
    WorkerStore,
    make_engine,
)
from conveyor.store.clock import SYNC_S, DbClock
from conveyor.store.leases import LeaseStore
from conveyor.store.notify import NotifyEvents, Waker, pg_job_changes
from conveyor.store.schedules import ScheduleStore
from conveyor.store.stats import StatsStore

if TYPE_CHECKING:  # Redis is imported only when configured
    from conveyor.dispatch.redis import RedisDispatcher

#: How long a worker's claim waits on Redis for a delivery when nothing is claimable.
REDIS_BLOCK_S = 1.0

Changes = Callable[[], AsyncIterator[str]]


@dataclass(frozen=True)
class Services:
    """What one process runs on. ``streams`` is the Redis dispatcher when Redis delivers."""

    settings: Settings
    engine: Engine
    clock: DbClock
    jobs: JobStore
    claims: ClaimStore
    runs: RunStore
    upkeep: UpkeepStore
    workers: WorkerStore
    leases: LeaseStore
    stats: StatsStore
    schedules: ScheduleStore
    handoff: Handoff
    events: Events
    streams: RedisDispatcher | None

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        consumer: str = "client",
        pool_size: int = 5,
        clock_sync_s: float | None = SYNC_S,
    ) -> Services:
        """Connect nothing yet (engines and Redis connect on first use). ``consumer`` names
        this process to Redis; ``clock_sync_s=None``: the process measures the database's
        time itself (``DbClock.sync``), as an event loop must."""
        engine = make_engine(settings.database_url, pool_size=pool_size)
        postgres = engine.dialect.name == "postgresql"
        streams: RedisDispatcher | None = None
        handoff: Handoff = NO_HANDOFF
        bell = None if postgres else doorbell_dir(engine.url.database or "")
        if bell is not None:  # SQLite: ring the idle workers of this database file
            handoff = Doorbell(bell)
        events: Events = NotifyEvents(engine) if postgres else NO_EVENTS
        if settings.redis_url:
            from conveyor.dispatch.redis import RedisDispatcher

            streams = RedisDispatcher(
                settings.redis_url,
                prefix=settings.redis_prefix,
                consumer=consumer,
                window=settings.dispatch_window,
            )
            handoff = events = streams
        return cls(
            settings=settings,
            engine=engine,
            clock=DbClock(engine, sync_s=clock_sync_s),
            # Database dispatch on PostgreSQL: the enqueue's own statement wakes idle workers.
            jobs=JobStore(engine, wake=postgres and streams is None),
            claims=ClaimStore(engine),
            runs=RunStore(engine),
            upkeep=UpkeepStore(engine),
            workers=WorkerStore(engine),
            leases=LeaseStore(engine),
            stats=StatsStore(engine),
            # Its own small pool: a scheduler frozen inside a transaction (SIGSTOP, a long
            # GC pause) must not hold the others up, so the server ends such a transaction.
            schedules=ScheduleStore(
                make_engine(settings.database_url, pool_size=2, idle_in_transaction_s=3)
            ),
            handoff=handoff,
            events=events,
            streams=streams,
        )

    def source(self, worker_id: str, queues: Iterable[str], lease_s: float) -> Source:
        """Where a worker's next jobs come from: Redis deliveries claimed in the database,
        or the database alone (woken by LISTEN on PostgreSQL, else polled)."""
        if self.streams is not None:
            from conveyor.delivery.redis import RedisSource

            return RedisSource(
                self.claims, self.streams, worker_id, lease_s, self.clock.now, idle_s=REDIS_BLOCK_S
            )
        waker: Wakeup | None = None
        if self.engine.dialect.name == "postgresql":
            waker = Waker(self.engine, queues)
        elif isinstance(self.handoff, Doorbell):  # SQLite: the bell its hand-offs ring
            waker = DoorbellListener(self.handoff.directory, queues)
        return DatabaseSource(
            self.claims,
            worker_id,
            lease_s,
            self.clock.now,
            idle_s=self.settings.poll_seconds,
            waker=waker,
        )

    def changes(self) -> Changes | None:
        """Job-change notices for the API's event streams: Redis pub/sub, PostgreSQL
        LISTEN, or None (SQLite without Redis: streams poll)."""
        settings = self.settings
        if settings.redis_url:
            from conveyor.dispatch.events import job_changes

            url, prefix = settings.redis_url, settings.redis_prefix
            return lambda: job_changes(url, prefix)
        if self.engine.dialect.name == "postgresql":
            db_url = settings.database_url
            return lambda: pg_job_changes(db_url)
        return None

    def close(self) -> None:
        if self.streams is not None:
            self.streams.close()
        if isinstance(self.handoff, Doorbell):
            self.handoff.close()
        self.schedules.engine.dispose()
        self.engine.dispose()
