"""Building a worker process in one place: its id, its services, its reconciler and (with
``--with-scheduler``) its scheduler; preparing a supervisor to fork children; running the
event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from conveyor.app import Conveyor
from conveyor.core.gctune import tune_gc
from conveyor.core.registry import Registry
from conveyor.core.settings import Settings, parse_queues
from conveyor.reconciler import reconciler_for
from conveyor.scheduler import Scheduler
from conveyor.services import Services
from conveyor.store.schema import ensure_current
from conveyor.worker.loop import Worker


def default_queues(registry: Registry, settings: Settings) -> dict[str, int]:
    """CONVEYOR_QUEUES when set; otherwise every queue a registered job type uses."""
    if "queues" in settings.model_fields_set or not len(registry):
        return parse_queues(settings.queues)
    return dict.fromkeys(sorted({t.queue for t in registry}), 1)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_worker(
    app: Conveyor,
    *,
    queues: dict[str, int] | None = None,
    concurrency: int | None = None,
    strict: bool = False,
    grace_s: float | None = None,
    migrate: bool = True,
    with_scheduler: bool = False,
    on_wedged: Callable[[str], None] | None = None,
) -> Worker:
    """A worker for ``app``, with every part it runs on (nothing connects until it runs).
    ``migrate``: bring the schema up to date first, one statement when it is (``conveyor
    worker`` does it once, before it builds any worker, and passes False)."""
    settings = app.settings
    worker_id = new_worker_id()
    queues = queues or default_queues(app.registry, settings)
    services = Services.build(settings, consumer=worker_id, pool_size=6, clock_sync_s=None)
    if migrate:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        ensure_current(services.engine)
    reconciler = reconciler_for(services, app.registry, worker_id, list(queues))
    scheduler = None
    if with_scheduler:
        scheduler = Scheduler(app.schedules, services.schedules, app.client)
    return Worker(
        app.registry,
        services,
        reconciler,
        worker_id=worker_id,
        queues=queues,
        concurrency=concurrency,
        strict=strict,
        grace_s=grace_s,
        scheduler=scheduler,
        on_wedged=on_wedged,
    )


def prepare_to_fork(app: Conveyor) -> None:
    """Before ``--processes N`` forks its children (the schema checked already): import what
    each child would import on its own (the Redis dispatcher, uvloop) and settle the garbage
    collector (``settle_gc``), so a child starts serving at once and its collector never
    walks, nor copies page by page, the objects it shares with the supervisor. Leaves no
    connection open and no thread running behind."""
    if app.settings.redis_url:
        import encodings.idna  # noqa: F401  (redis-py's connect encodes the host name)

        import conveyor.delivery.redis  # noqa: F401  (and the Redis dispatcher with it)
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401
    settle_gc()


def settle_gc() -> None:
    """Freeze what the process's start made (imports, settings, the app: all of it lives as
    long as the process) out of the collector's passes, then ``tune_gc``. Frozen without a
    full pass first: ``conveyor worker`` starts with the collector held back, so that pass
    would be its first over ~100,000 objects (~70 ms of the start) to find a few hundred
    objects of garbage, which stay."""
    gc.freeze()
    tune_gc()


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the worker's loop on uvloop when it is installed (it comes with uvicorn[standard]):
    task creation and executor hand-offs, a few per job, cost about half as much there.
    The garbage collector is settled first (``settle_gc``).
    """
    settle_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
