"""What the pages show, read through the same stores and client as the HTTP API."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from conveyor.app import Conveyor
from conveyor.core.durations import parse_instant
from conveyor.core.errors import ConveyorError
from conveyor.core.states import TERMINAL, State
from conveyor.core.views import AttemptView, JobView
from conveyor.store.history import History
from conveyor.store.schema import schema_problem
from conveyor.store.workers import alive_since

log = logging.getLogger("conveyor.dashboard")

#: How long a health probe may take before the banner says the service is unreachable.
PROBE_S = 2.0
#: Workers whose last heartbeat is older than this are not listed at all.
WORKERS_SHOWN_S = 3600.0
#: Time-range choices of the jobs filter, by label.
SINCE: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}

_probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="conveyor-ui-probe")


@dataclass(frozen=True, slots=True)
class Health:
    database: str | None  # None: answered; else what went wrong
    schema: str | None  # None: at the revision this Conveyor needs (or not known)
    redis: str | None
    redis_configured: bool

    @property
    def ok(self) -> bool:
        return self.database is None and self.schema is None and self.redis is None


def health(conveyor: Conveyor) -> Health:
    """Whether the database answers with the schema this Conveyor needs, and Redis answers,
    each within PROBE_S (run side by side)."""
    services = conveyor.services
    database = _probes.submit(services.stats.ping)
    streams = services.streams
    redis = _probes.submit(streams.ping) if streams is not None else None
    database_problem = _outcome(database)
    schema = None
    if database_problem is None:
        try:
            schema = _probes.submit(schema_problem, services.engine).result(timeout=PROBE_S)
        except Exception as exc:  # a schema we cannot read is a problem of its own
            schema = f"cannot read the schema's revision: {type(exc).__name__}"
    redis_problem = _outcome(redis) if redis else None
    return Health(database_problem, schema, redis_problem, streams is not None)


def _outcome(future: Any) -> str | None:
    try:
        future.result(timeout=PROBE_S)
    except FutureTimeout:
        return f"no answer within {PROBE_S:.0f} s"
    except Exception as exc:
        text = str(getattr(exc, "orig", exc)).strip().splitlines()
        return text[0] if text else type(exc).__name__
    return None


def with_recent_queues(queues: dict[str, Any], history: History) -> dict[str, Any]:
    """The overview's queues, and those that only finished work lately (nothing active now:
    the queue overview leaves them out, the history knows them), by name."""
    shown = dict(queues)
    for name in history.queues:
        if name and name not in shown:
            shown[name] = {
                "counts": {s.value: 0 for s in State if s not in TERMINAL},
                "estimated": [],
                "oldest_queued_age_seconds": None,
                "completed_last_minute": 0,
                "failed_last_minute": 0,
                "mean_wait_seconds": None,
                "mean_run_seconds": None,
            }
    return dict(sorted(shown.items()))


@dataclass(slots=True)
class WorkerRow:
    row: dict[str, Any]
    alive: bool
    weights: list[tuple[str, int]] = field(default_factory=list)


def workers(conveyor: Conveyor, now: datetime) -> list[WorkerRow]:
    """Workers heard from in the last hour; ``alive`` unless stopped or silent for three
    heartbeats (the rule /workers uses)."""
    since = alive_since(now, conveyor.settings.heartbeat_seconds)
    rows = conveyor.services.workers.recent(now - timedelta(seconds=WORKERS_SHOWN_S))
    out = []
    for row in rows:
        alive = row["stopped_at"] is None and row["heartbeat_at"] >= since
        queues = row["queues"] if isinstance(row["queues"], dict) else {}
        weights = sorted(((str(q), int(w)) for q, w in queues.items()), key=lambda p: -p[1])
        out.append(WorkerRow(row, alive, weights))
    out.sort(key=lambda w: (not w.alive, w.row["host"], w.row["pid"]))
    return out


@dataclass(frozen=True, slots=True)
class PageFilter:
    """The jobs page's filter, as given in its query string (validated)."""

    state: State | None = None
    type: str | None = None
    queue: str | None = None
    since: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @property
    def empty(self) -> bool:
        return not any((self.state, self.type, self.queue, self.created_after, self.created_before))

    def params(self, pinned: bool = False) -> dict[str, str]:
        """As query parameters (what a link or a hidden form field carries); ``pinned``
        spells a relative range ("last 1h") as the times it meant when the page was made, so
        a confirmed action acts on the jobs the viewer was shown."""
        out = {
            "state": self.state.value if self.state else "",
            "type": self.type or "",
            "queue": self.queue or "",
            "since": "" if pinned else self.since or "",
        }
        if self.since is None or pinned:
            out["created_after"] = self.created_after.isoformat() if self.created_after else ""
            out["created_before"] = self.created_before.isoformat() if self.created_before else ""
        return {k: v for k, v in out.items() if v}

    def store_filters(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "type": self.type,
            "queue": self.queue,
            "created_after": self.created_after,
            "created_before": self.created_before,
        }

    def describe(self) -> str:
        parts = [f"{k} = {v}" for k, v in self.params().items()]
        return ", ".join(parts) if parts else "every job"


class BadFilter(ConveyorError):
    """A filter field of the jobs page makes no sense."""

    code = "invalid_filter"


def job_filter(params: dict[str, str], now: datetime) -> PageFilter:
    """A PageFilter from query or form fields; BadFilter names a field that makes no sense."""
    state_text = params.get("state") or None
    state = None
    if state_text is not None:
        try:
            state = State(state_text)
        except ValueError:
            raise BadFilter(f"state: {state_text!r} is not a job state") from None
    since = params.get("since") or None
    after = _time(params, "created_after")
    before = _time(params, "created_before")
    if since is not None:
        if since not in SINCE:
            raise BadFilter(f"since: choose one of {', '.join(SINCE)}")
        after, before = now - SINCE[since], None
    for name in ("type", "queue"):
        if len(params.get(name) or "") > 200:
            raise BadFilter(f"{name}: at most 200 characters")
    return PageFilter(
        state=state,
        type=(params.get("type") or "").strip() or None,
        queue=(params.get("queue") or "").strip() or None,
        since=since,
        created_after=after,
        created_before=before,
    )


def _time(params: dict[str, str], name: str) -> datetime | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        return parse_instant(name, text)
    except ValueError as exc:
        raise BadFilter(str(exc)) from None


def attempts(job: JobView) -> list[AttemptView]:
    """The job's attempts, the one running now included (its row is written when it ends)."""
    shown = list(job.attempts)
    running = job.state is State.RUNNING and job.started_at is not None
    if running and all(a.attempt != job.attempt for a in shown):
        shown.append(AttemptView(job.attempt, job.worker_id, job.started_at, None, "running"))
    return shown
