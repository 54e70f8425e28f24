"""Progress writes are coalesced: a chatty handler costs a few writes a second."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from conveyor import State
from conveyor.store import RunStore
from conveyor.worker.process import build_worker
from tests.conftest import Backend, wait_for


def test_ten_thousand_progress_reports_cost_a_few_writes(backend: Backend) -> None:
    app = backend.app()
    writes: list[int] = []
    original = RunStore.save_progress

    def counting(self: RunStore, updates: Any, now: Any) -> int:
        writes.append(len(updates))
        return original(self, updates, now)

    RunStore.save_progress = counting  # type: ignore[method-assign]
    worker = build_worker(app, queues={"default": 1}, concurrency=4)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),))
    thread.start()
    try:
        handle = app.enqueue("chatty", {"updates": 10_000})
        view = handle.wait(timeout=30)
    finally:
        loop.call_soon_threadsafe(worker.request_stop)
        thread.join(30)
        RunStore.save_progress = original  # type: ignore[method-assign]
    assert view.state is State.COMPLETED and view.result == 10_000
    assert view.progress == 100.0 and view.message == "step 9999"
    # 10,000 reports in well under a second: a handful of writes (the last rides on the finish)
    assert 1 <= len(writes) <= 20, writes
    assert worker.stats.finished == 1


def test_progress_is_visible_while_running(backend: Backend) -> None:
    app = backend.app()
    backend.worker()
    handle = app.enqueue("staged", {"pause": 0.5})
    seen: list[float] = []

    def progressed() -> bool:
        view = app.get(handle.id)
        if view.progress is not None and view.state is State.RUNNING:
            seen.append(view.progress)
        return view.terminal

    wait_for(progressed, timeout=20, interval=0.05, what="the job to end")
    assert len(set(seen)) >= 2 and set(seen) <= {0.0, 25.0, 50.0, 75.0, 95.0}
    assert seen == sorted(seen)  # observed values only ever grow
