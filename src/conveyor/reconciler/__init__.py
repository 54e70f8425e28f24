"""The reconciler: the duties that keep the database's jobs moving whatever a process did —
promotion of due jobs, rescue of runs whose worker died, stream feeding (Redis dispatch),
retention, the history's depth gauges, webhook delivery jobs — each in its own module with a ``run_once(now)``, run by one leading process.

Workers and ``conveyor scheduler`` each build one with ``build_reconciler``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from conveyor.core.registry import Registry
from conveyor.core.settings import Settings
from conveyor.core.webhooks import DELIVERY_ATTEMPTS, WEBHOOK_TYPE
from conveyor.dispatch.base import Handoff
from conveyor.reconciler.depth import DepthGauge
from conveyor.reconciler.feed import FEED_GRACE_S, HELD_SLACK, StreamFeeder, Streams, served_queues
from conveyor.reconciler.leadership import LEASE_NAME, Leadership, lease_ttl_s
from conveyor.reconciler.loop import IO, PROMOTE_EVERY_S, Pass, Reconciler
from conveyor.reconciler.promote import Promoter
from conveyor.reconciler.rescue import Rescuer
from conveyor.reconciler.retention import Cleaner, MinuteCleaner
from conveyor.reconciler.webhooks import WebhookSweeper
from conveyor.services import Services
from conveyor.store import JobStore, RunStore, UpkeepStore, WorkerStore
from conveyor.store.clock import DbClock
from conveyor.store.leases import LeaseStore
from conveyor.store.stats import StatsStore
from conveyor.store.webhooks import WebhookStore

__all__ = [
    "FEED_GRACE_S",
    "HELD_SLACK",
    "IO",
    "LEASE_NAME",
    "MinuteCleaner",
    "PROMOTE_EVERY_S",
    "Cleaner",
    "DepthGauge",
    "Handoff",
    "Leadership",
    "Pass",
    "Promoter",
    "Reconciler",
    "Rescuer",
    "StreamFeeder",
    "Streams",
    "WebhookSweeper",
    "build_reconciler",
    "lease_ttl_s",
    "reconciler_for",
    "served_queues",
]


def build_reconciler(
    *,
    upkeep: UpkeepStore,
    runs: RunStore,
    workers: WorkerStore,
    leases: LeaseStore | None,
    handoff: Handoff | None,
    streams: Streams | None,
    clock: DbClock,
    io: IO,
    registry: Registry,
    settings: Settings,
    holder: str,
    queues: Sequence[str],
    stats: StatsStore | None = None,
    jobs: JobStore | None = None,
) -> Reconciler:
    """The reconciler of one process. ``holder`` names it in the leader lease (``leases=None``:
    it always leads); ``queues`` are its own, fed along with every live worker's;
    ``streams``: the Redis dispatcher, or None under database dispatch (nothing to feed);
    ``handoff``: where promoted jobs are pushed (None or ``NO_HANDOFF``: nowhere);
    ``stats``: where the history's gauges go (None: a store on ``upkeep``'s engine);
    ``jobs``: where webhook delivery jobs are inserted (None: a store on that engine)."""
    stats = StatsStore(upkeep.engine) if stats is None else stats
    reconcile_s = settings.reconcile_seconds
    feeder = None
    if streams is not None:
        served = served_queues(list(queues), workers, settings.heartbeat_seconds)
        feeder = StreamFeeder(
            upkeep, streams, served, settings.dispatch_window, settings.lease_seconds
        )
    return Reconciler(
        Leadership(leases, holder, lease_ttl_s(reconcile_s)),
        clock,
        io,
        promoter=Promoter(upkeep, handoff),
        rescuer=Rescuer(upkeep, runs, registry),
        cleaner=Cleaner(
            upkeep, settings.retention_completed_seconds, settings.retention_failed_seconds
        ),
        depth=DepthGauge(stats, workers, settings.heartbeat_seconds),
        minute_cleaner=MinuteCleaner(stats),
        feeder=feeder,
        reconcile_s=reconcile_s,
        webhooks=WebhookSweeper(
            WebhookStore(JobStore(upkeep.engine) if jobs is None else jobs),
            handoff,
            _delivery_attempts(registry),
        ),
    )


def _delivery_attempts(registry: Registry) -> int:
    if WEBHOOK_TYPE in registry:
        return registry.get(WEBHOOK_TYPE).policy.max_attempts
    return DELIVERY_ATTEMPTS


def reconciler_for(
    services: Services, registry: Registry, holder: str, queues: Sequence[str]
) -> Reconciler:
    """The reconciler of a process on its ``services`` (a worker's, or ``conveyor
    scheduler``'s), running its blocking steps in ``asyncio.to_thread``."""
    return build_reconciler(
        upkeep=services.upkeep,
        runs=services.runs,
        workers=services.workers,
        leases=services.leases,
        handoff=services.handoff,
        streams=services.streams,
        clock=services.clock,
        io=asyncio.to_thread,
        registry=registry,
        settings=services.settings,
        holder=holder,
        queues=queues,
        stats=services.stats,
        jobs=services.jobs,
    )
