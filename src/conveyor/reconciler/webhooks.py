"""Webhooks: ended jobs that name a webhook get a delivery job of their own.

Whoever ended the job (a worker's finish, a recovery, a cancel, a bulk cancel) did nothing
for its webhook: the end itself, committed, is the record that a delivery is owed (the job
enters ``conveyor_jobs_webhook_due``). This duty turns each such end into one delivery job
(``conveyor.webhook``, idempotency key ``webhook:<job>:<state>:<attempt>``), recording the
end as handed over in the same transaction. A crash anywhere loses nothing: before the
commit the end is still due; after it the delivery job exists, and retries on its own.
"""

from __future__ import annotations

from datetime import datetime

from conveyor.core.ids import new_job_id
from conveyor.core.states import State
from conveyor.core.webhooks import META_URLS, WEBHOOK_QUEUE, WEBHOOK_TYPE, delivery_key
from conveyor.dispatch.base import Handoff
from conveyor.reconciler.promote import hand_off
from conveyor.store import NewJob
from conveyor.store.webhooks import DueWebhook, WebhookStore

BATCH = 500


class WebhookSweeper:
    """``max_attempts``: the delivery job type's budget; ``handoff``: where new delivery jobs
    are pushed (None: workers claim them from the table)."""

    def __init__(self, store: WebhookStore, handoff: Handoff | None, max_attempts: int) -> None:
        self.store = store
        self.handoff = handoff
        self.max_attempts = max_attempts

    def run_once(self, now: datetime) -> int:
        """Hand one batch of due ends to delivery jobs; returns how many delivery jobs were
        made."""
        due = self.store.due(BATCH)
        if not due:
            return 0
        inserted = self.store.hand_over([(d, self.delivery(d, now)) for d in due])
        ready = [(i.queue, i.id) for i in inserted if i.created and i.state is State.QUEUED]
        if ready and self.handoff is not None:
            hand_off(self.handoff, ready)
        return sum(1 for i in inserted if i.created)

    def delivery(self, due: DueWebhook, now: datetime) -> NewJob | None:
        """The delivery job of this end, or None when no URL names this state (a global
        webhook for completed jobs only, say)."""
        url = (due.meta.get(META_URLS) or {}).get(due.state.value)
        if not url:
            return None
        return NewJob(
            id=new_job_id(at_ms=int(now.timestamp() * 1000)),
            type=WEBHOOK_TYPE,
            queue=WEBHOOK_QUEUE,
            payload={
                "job_id": due.id,
                "event": due.state.value,
                "attempt": due.attempt,
                "url": url,
            },
            state=State.QUEUED,
            max_attempts=self.max_attempts,
            created_at=now,
            idempotency_key=delivery_key(due.id, due.state, due.attempt),
        )
