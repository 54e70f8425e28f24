"""Weighted queues share claims by weight under saturation; --strict drains in order."""

from __future__ import annotations

from sqlalchemy import func, select

from conveyor import State
from conveyor.client import EnqueueRequest
from conveyor.store.tables import jobs
from tests.conftest import Backend, wait_for

QUEUES = {"critical": "weighted_critical", "default": "weighted_default", "low": "weighted_low"}


def _fill(app, per_queue: int) -> None:  # type: ignore[no-untyped-def]
    for job_type in QUEUES.values():
        app.enqueue_many([EnqueueRequest(job_type, {"n": i}) for i in range(per_queue)])


def _claimed_by_queue(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    query = select(jobs.c.queue, func.count()).where(jobs.c.attempt > 0).group_by(jobs.c.queue)
    with app.client.jobs.engine.connect() as conn:
        return {q: int(n) for q, n in conn.execute(query)}


def test_weighted_shares_under_saturation(backend: Backend) -> None:
    app = backend.app()
    _fill(app, 1000)
    worker = backend.worker("--queues", "critical=6,default=3,low=1", "--concurrency", "8")
    wait_for(lambda: sum(_claimed_by_queue(app).values()) >= 600, timeout=60, what="600 claims")
    worker.stop()
    claimed = _claimed_by_queue(app)
    total = sum(claimed.values())
    assert all(claimed[q] < 1000 for q in QUEUES), claimed  # every queue stayed backlogged
    for queue, weight in (("critical", 0.6), ("default", 0.3), ("low", 0.1)):
        share = claimed[queue] / total
        assert abs(share - weight) <= 0.05 * weight, (queue, share, claimed)


def test_strict_priority_drains_queues_in_order(backend: Backend) -> None:
    app = backend.app()
    _fill(app, 60)
    backend.worker("--queues", "critical=3,default=2,low=1", "--strict", "--concurrency", "4")
    wait_for(
        lambda: not app.list(state="queued").items and not app.list(state="running").items,
        timeout=60,
        what="all jobs done",
    )
    rank = {"critical": 0, "default": 1, "low": 2}
    with app.client.jobs.engine.connect() as conn:
        rows = conn.execute(select(jobs.c.queue, jobs.c.started_at, jobs.c.state)).all()
    assert all(r.state == State.COMPLETED.value for r in rows)
    order = [rank[r.queue] for r in sorted(rows, key=lambda r: (r.started_at, rank[r.queue]))]
    assert order == sorted(order)
