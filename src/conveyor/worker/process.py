"""Building a worker process in one place: its id, its services, its reconciler and (with
``--with-scheduler``) its scheduler; preparing a supervisor to fork children; running the
event loop."""

from __future__ import annotations

import asyncio
import contextlib
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
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
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
    ``migrate``: bring the schema up to date first (a supervisor does it once instead)."""
    settings = app.settings
    worker_id = new_worker_id()
    queues = queues or default_queues(app.registry, settings)
    services = Services.build(settings, consumer=worker_id, pool_size=6, clock_sync_s=None)
    if migrate:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade(services.engine)
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
    """Before ``--processes N`` forks its children: migrate the schema once and import what
    each child would import on its own (the Redis dispatcher, uvloop), so a child starts
    serving at once. Leaves no connection open and no thread running behind."""
    engine = make_engine(app.settings.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    if app.settings.redis_url:
        import conveyor.delivery.redis  # noqa: F401  (and the Redis dispatcher with it)
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the worker's loop on uvloop when it is installed (it comes with uvicorn[standard]):
    task creation and executor hand-offs, a few per job, cost about half as much there.
    The garbage collector is tuned first (``tune_gc``).
    """
    tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
