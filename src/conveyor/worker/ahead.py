"""Jobs claimed ahead of free slots: how many to hold, and when to give them back.

A worker that claims only as many jobs as it has free slots claims one job per round trip
once its slots are busy and its jobs are quick (each ending frees one slot, which the next
claim fills). Claiming a few ahead, as Celery's prefetch does, lets a claim serve many slot
frees. The number held ahead follows the pace jobs finish at: as many as the worker's slots
are expected to start within ``HORIZON_S`` — hundreds for no-op jobs, none for jobs that
take a second. Nothing is held ahead while no job has ended for ``HOLD_S`` (the slots are
busy with long jobs), and jobs held longer than that are handed back unstarted, so a job
claimed ahead never waits behind a long job while another worker could run it.

A job claimed ahead is claimed like any other (running, leased, fenced by its attempt); it
is started, recorded and shown like any other, its attempt's start being the moment its
handler was called. One handed back unstarted is queued again without an attempt charged.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from conveyor.store import ClaimedJob

#: How far ahead of its slots a worker claims: the jobs they are expected to start within.
HORIZON_S = 0.05
#: Jobs held ahead at most when the pace is left to decide (``Settings.prefetch`` unset).
AUTO_MAX = 500
#: How long held jobs may wait while no slot frees before they are handed back; also how
#: long after the last job ended the worker still claims ahead.
HOLD_S = 0.1
#: The weight of the newest attempt's duration in the running pace.
PACE_WEIGHT = 0.1


class Ahead:
    """The jobs one worker process has claimed ahead of its free slots, oldest first."""

    def __init__(
        self,
        concurrency: int,
        limit: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limit``: most jobs held ahead (``Settings.prefetch``): None sizes it by the pace
        (up to ``AUTO_MAX``), 0 turns claiming ahead off."""
        self.concurrency = concurrency
        self.limit = AUTO_MAX if limit is None else limit
        self.clock = clock
        self.jobs: deque[ClaimedJob] = deque()
        self.pace_s: float | None = None  # running mean of attempt durations
        self.last_end = 0.0  # when an attempt last ended (clock)
        self._since = 0.0  # when the oldest held job was claimed (clock)

    def __len__(self) -> int:
        return len(self.jobs)

    def ended(self, duration_s: float) -> None:
        """An attempt ended after ``duration_s``: its slot is free, the pace moves."""
        pace = self.pace_s
        self.pace_s = duration_s if pace is None else pace + PACE_WEIGHT * (duration_s - pace)
        self.last_end = self.clock()

    def target(self) -> int:
        """How many jobs to hold ahead just now."""
        pace = self.pace_s
        if not self.limit or pace is None or self.clock() - self.last_end > HOLD_S:
            return 0  # no pace yet, or the slots are busy with long jobs
        return min(self.limit, int(self.concurrency * HORIZON_S / max(pace, 1e-6)))

    def want(self, free: int) -> int:
        """How many jobs the next claim should ask for, with ``free`` slots free: the free
        slots and the jobs held ahead topped up — when the stock is down to half (claims
        serve many slot frees, not one each)."""
        target = self.target()
        held = len(self.jobs)
        if free > 0:
            return free + max(0, target - held)
        return target - held if held <= target // 2 else 0

    def hold(self, job: ClaimedJob) -> None:
        if not self.jobs:
            self._since = self.clock()
        self.jobs.append(job)

    def next(self) -> ClaimedJob | None:
        if not self.jobs:
            return None
        job = self.jobs.popleft()
        self._since = self.clock()  # the next one waits from now: the slots are moving
        return job

    def overdue(self) -> bool:
        """Jobs are held and no slot has freed for ``HOLD_S``: hand them back."""
        now = self.clock()
        return bool(self.jobs) and now - max(self.last_end, self._since) > HOLD_S

    def take(self, job_id: str) -> ClaimedJob | None:
        """Remove one held job (it was canceled)."""
        for job in self.jobs:
            if job.id == job_id:
                self.jobs.remove(job)
                return job
        return None

    def take_all(self) -> list[ClaimedJob]:
        jobs, self.jobs = list(self.jobs), deque()
        return jobs

    def owned(self) -> list[tuple[str, int]]:
        return [(job.id, job.attempt) for job in self.jobs]
