"""Ended jobs whose webhook has no delivery job yet, and handing them to delivery jobs.

A job with a webhook carries its URLs in ``meta`` from its enqueue; once it has ended it is
in the partial index ``conveyor_jobs_webhook_due`` (``tables.WEBHOOK_DUE``) until a delivery
job is made for that end, in the same transaction that records the end as handed over.
Jobs without a webhook never enter the index, so finding the due ones costs nothing per
ordinary job, whoever ended it (a worker, a recovery, a cancel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from conveyor.core.sizes import to_json
from conveyor.core.states import State
from conveyor.core.webhooks import META_DELIVERIES, META_SENT, event_marker
from conveyor.store.errors import translate_errors
from conveyor.store.jobs import JobStore
from conveyor.store.records import Inserted, NewJob
from conveyor.store.tables import WEBHOOK_DUE, jobs

# Fenced on the end it was read at, and on it still being due: a job retried and ended again
# meanwhile is a new end, found by the next pass. Only Conveyor's own keys are merged in.
_MARK = {
    "postgresql": "UPDATE {jobs} SET meta = meta || CAST(:patch AS jsonb) WHERE id = :id{fence}",
    "sqlite": "UPDATE {jobs} SET meta = json_patch(meta, :patch) WHERE id = :id{fence}",
}
_FENCE = " AND state = :state AND attempt = :attempt AND {due}"


@dataclass(frozen=True, slots=True)
class DueWebhook:
    """An ended job whose end has no delivery job yet."""

    id: str
    state: State
    attempt: int
    meta: dict[str, Any]

    @property
    def deliveries(self) -> list[str]:
        return list(self.meta.get(META_DELIVERIES) or [])


class WebhookStore:
    def __init__(self, jobs_store: JobStore) -> None:
        """``jobs_store``: delivery jobs are inserted through it (idempotent by key, waking
        idle workers like any enqueue)."""
        self.jobs = jobs_store
        self.engine = jobs_store.engine
        dialect = self.engine.dialect.name
        due = WEBHOOK_DUE[dialect]
        columns = (jobs.c.id, jobs.c.state, jobs.c.attempt, jobs.c.meta)
        self._due = select(*columns).where(text(due)).order_by(jobs.c.id)
        mark = _MARK[dialect]
        by_id = bindparam("id", type_=jobs.c.id.type)  # stored as SQLite stores uuids
        self._mark = text(mark.format(jobs=jobs.name, fence=_FENCE.format(due=due)))
        self._mark = self._mark.bindparams(by_id)
        self._relist = text(mark.format(jobs=jobs.name, fence="")).bindparams(by_id)

    @translate_errors
    def due(self, limit: int = 500) -> list[DueWebhook]:
        """Up to ``limit`` ended jobs whose webhook has no delivery job for this end."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._due.limit(limit)).all()
        return [DueWebhook(str(r.id), State(r.state), r.attempt, r.meta) for r in rows]

    @translate_errors
    def hand_over(self, handed: Sequence[tuple[DueWebhook, NewJob | None]]) -> list[Inserted]:
        """In one transaction, record each end as handed over and insert its delivery job
        (None: no URL for this end; it is only recorded). An end that changed since it was
        read is left for the next pass. Returns the delivery jobs, new or already there."""
        out: list[Inserted] = []
        with self.engine.begin() as conn:
            for due, delivery in handed:
                inserted = self._hand_over(conn, due, delivery)
                if inserted is not None:
                    out.append(inserted)
        return out

    def _hand_over(
        self, conn: Connection, due: DueWebhook, delivery: NewJob | None
    ) -> Inserted | None:
        listed = due.deliveries + ([delivery.id] if delivery is not None else [])
        if not self._marked(conn, due, listed):
            return None
        if delivery is None:
            return None
        (inserted,) = self.jobs.insert([delivery], conn)
        if not inserted.created and inserted.id not in due.deliveries:
            # Another process made it first (two leaders for a moment): list its job.
            self._marked(conn, due, [*due.deliveries, inserted.id], fenced=False)
        return inserted

    def _marked(
        self, conn: Connection, due: DueWebhook, listed: list[str], fenced: bool = True
    ) -> bool:
        patch = {META_SENT: event_marker(due.state, due.attempt), META_DELIVERIES: listed}
        params = {
            "id": due.id,
            "state": due.state.value,
            "attempt": due.attempt,
            "patch": to_json(patch),
        }
        return bool(conn.execute(self._mark if fenced else self._relist, params).rowcount)
