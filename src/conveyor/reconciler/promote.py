"""Promotion: scheduled and retrying jobs whose time has come become queued."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from conveyor.dispatch.base import Handoff
from conveyor.store import UpkeepStore

log = logging.getLogger("conveyor.maintenance")  # the name its log lines have always carried


class Promoter:
    """Queues the due jobs and hands them to workers. ``handoff=None``: nothing to hand off
    (workers claim from the jobs table)."""

    def __init__(self, upkeep: UpkeepStore, handoff: Handoff | None) -> None:
        self.upkeep = upkeep
        self.handoff = handoff

    def run_once(self, now: datetime) -> int:
        """Promote one batch of jobs due by ``now``; returns how many."""
        promoted = self.upkeep.promote_due(now)
        if promoted and self.handoff is not None:
            hand_off(self.handoff, [(queue, job_id) for job_id, queue in promoted])
        return len(promoted)


def hand_off(handoff: Handoff, items: Sequence[tuple[str, str]]) -> None:
    """Push, logging a failure instead of raising it: the jobs stay queued in the database,
    from where the stream feeder pushes them again."""
    try:
        handoff.push(items)
    except Exception as exc:
        log.warning("dispatch of %d promoted job(s) failed: %s", len(items), exc)
