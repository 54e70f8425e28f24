"""Rescue: runs whose worker stopped renewing their lease are ended as ``worker_lost``."""

from __future__ import annotations

import logging
from datetime import datetime

from conveyor.core.logs import job_fields, job_label
from conveyor.core.outcome import AttemptOutcome, decide_lost
from conveyor.core.registry import Registry
from conveyor.core.states import State
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
        finishes = [self._finish(run, now) for run in expired]
        recovered = self.runs.finish(finishes)
        if recovered:
            log.warning("recovered %d job(s) from lost workers", recovered)
            if log.isEnabledFor(logging.WARNING):
                for run, finish in zip(expired, finishes, strict=True):
                    _say_lost(run, finish, late=len(expired) - recovered)
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


def _say_lost(run: ExpiredRun, finish: Finish, late: int) -> None:
    """One line per recovered job, like a worker's line about its jobs (``worker_lost``)."""
    fields = job_fields(run.id, run.type, run.queue, run.attempt, run.worker_id or "")
    fields.update(event="worker_lost", state=finish.state.value)
    what = finish.state.value
    if finish.state is State.RETRYING and finish.run_at is not None:
        fields["delay_s"] = delay_s = round((finish.run_at - finish.finished_at).total_seconds(), 3)
        what = f"retrying in {delay_s:.1f} s"
    maybe = f" (unless it is one of {late} a late renewal kept)" if late else ""
    log.warning(
        "%s lost its worker (lease expired): %s%s", job_label(fields), what, maybe, extra=fields
    )
