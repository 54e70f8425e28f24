"""Rescue: runs whose worker stopped renewing their lease are ended as ``worker_lost``."""

from __future__ import annotations

import logging
from datetime import datetime

from conveyor.core.outcome import AttemptOutcome, decide_lost
from conveyor.core.registry import Registry
from conveyor.store import ExpiredRun, Finish, RunStore, UpkeepStore

log = logging.getLogger("conveyor.maintenance")  # the name its log lines have always carried


class Rescuer:
    """Ends expired runs as ``core.outcome.decide_lost`` decides (retried, failed or
    canceled). Each finish is fenced on the lease still being expired: a worker that renews
    at the last moment keeps its run."""

    def __init__(self, upkeep: UpkeepStore, runs: RunStore, registry: Registry) -> None:
        self.upkeep = upkeep
        self.runs = runs
        self.registry = registry

    def run_once(self, now: datetime) -> int:
        """End one batch of runs whose lease expired before ``now``; returns how many."""
        expired = self.upkeep.expired_runs(now)
        if not expired:
            return 0
        recovered = self.runs.finish([self._finish(run, now) for run in expired])
        if recovered:
            log.warning("recovered %d job(s) from lost workers", recovered)
        return recovered

    def _finish(self, run: ExpiredRun, now: datetime) -> Finish:
        decision = decide_lost(
            run.worker_id,
            policy=self.registry.policy(run.type, run.max_attempts),
            attempt_number=run.charged,
            now=now,
            cancel_requested=run.cancel_requested,
        )
        return Finish(
            job_id=run.id,
            attempt=run.attempt,
            state=decision.state,
            outcome=AttemptOutcome.WORKER_LOST,
            worker_id=run.worker_id,
            started_at=run.started_at,
            finished_at=now,
            error=decision.error,
            run_at=decision.run_at,
            expired_before=now,
        )
