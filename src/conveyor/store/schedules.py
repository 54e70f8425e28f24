"""Schedules and their fires. A fire row's unique (schedule, tick) makes each tick fire once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.core.errors import ScheduleConflict, ScheduleNotFound
from conveyor.core.states import ACTIVE, State
from conveyor.core.storable import text_problem
from conveyor.store.clock import db_now
from conveyor.store.errors import translate_errors
from conveyor.store.jobs import JobStore
from conveyor.store.records import NewJob
from conveyor.store.tables import jobs, schedule_fires, schedules

SPEC_FIELDS = ("job_type", "payload", "queue", "cron", "every_s", "tz", "overlap", "catch_up")


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What to write for one schedule at one moment (decided by the scheduler)."""

    name: str
    fire: Sequence[datetime]
    missed: Sequence[datetime]
    next_at: datetime
    overlap: str


@dataclass(frozen=True, slots=True)
class Fired:
    tick_at: datetime
    outcome: str
    job_id: str | None
    queue: str | None


class ScheduleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.jobs = JobStore(engine)

    def _insert(self) -> Any:
        return postgresql.insert if self.dialect == "postgresql" else sqlite.insert

    # -- clock ------------------------------------------------------------------------------

    @translate_errors
    def db_now(self) -> datetime:
        """The database's clock: every scheduler decides time by it, not by its host's."""
        with self.engine.connect() as conn:
            return db_now(conn)

    # -- definitions ------------------------------------------------------------------------

    @translate_errors
    def sync_code(self, defined: Sequence[dict[str, Any]], now: datetime) -> None:
        """Upsert the schedules defined in code; disable code schedules no longer defined."""
        names = [d["name"] for d in defined]
        with self.engine.begin() as conn:
            for d in defined:
                existing = conn.execute(
                    select(schedules.c.source, *[schedules.c[f] for f in SPEC_FIELDS]).where(
                        schedules.c.name == d["name"]
                    )
                ).first()
                if existing is None:
                    _insert_new(conn, d, "code", now)
                    continue
                changed = any(existing._mapping[f] != d[f] for f in SPEC_FIELDS)
                values: dict[str, Any] = {"enabled": True, "source": "code"}
                if changed:  # a new spec: recompute the next tick
                    values.update({f: d[f] for f in SPEC_FIELDS}, next_tick_at=None)
                    values["updated_at"] = now
                conn.execute(
                    update(schedules).where(schedules.c.name == d["name"]).values(**values)
                )
            stale = and_(schedules.c.source == "code", schedules.c.enabled.is_(True))
            if names:
                stale = and_(stale, schedules.c.name.not_in(names))
            conn.execute(update(schedules).where(stale).values(enabled=False, updated_at=now))

    @translate_errors
    def create(self, d: dict[str, Any], now: datetime) -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(schedules.c.name).where(schedules.c.name == d["name"])
            ).first()
            if exists is not None:
                raise ScheduleConflict(f"a schedule named {d['name']!r} exists", name=d["name"])
            _insert_new(conn, d, "api", now)

    @translate_errors
    def change(self, name: str, values: dict[str, Any], now: datetime) -> None:
        """Change a schedule; spec changes only for run-time schedules."""
        with self.engine.begin() as conn:
            row = self._row(conn, name)
            spec = {k: v for k, v in values.items() if k in SPEC_FIELDS}
            if spec and row["source"] == "code":
                raise ScheduleConflict(
                    f"schedule {name!r} is defined in code; change it there", name=name
                )
            if spec:
                values = {**values, "next_tick_at": None}
            conn.execute(
                update(schedules).where(schedules.c.name == name).values(**values, updated_at=now)
            )

    @translate_errors
    def delete(self, name: str) -> None:
        with self.engine.begin() as conn:
            row = self._row(conn, name)
            if row["source"] == "code" and row["enabled"]:
                raise ScheduleConflict(
                    f"schedule {name!r} is defined in code; remove it there", name=name
                )
            conn.execute(delete(schedule_fires).where(schedule_fires.c.schedule == name))
            conn.execute(delete(schedules).where(schedules.c.name == name))

    # -- reads ------------------------------------------------------------------------------

    @translate_errors
    def get(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return self._row(conn, name)

    @translate_errors
    def all(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(schedules).order_by(schedules.c.name)).all()
            return [dict(r._mapping) for r in rows]

    @translate_errors
    def fires(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest fires, newest first, with the state of the job each one enqueued."""
        if text_problem(name):
            return []
        query = (
            select(
                schedule_fires.c.tick_at,
                schedule_fires.c.outcome,
                schedule_fires.c.job_id,
                schedule_fires.c.created_at,
                jobs.c.state.label("job_state"),
            )
            .select_from(schedule_fires.outerjoin(jobs, jobs.c.id == schedule_fires.c.job_id))
            .where(schedule_fires.c.schedule == name)
            .order_by(schedule_fires.c.tick_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {**r._mapping, "job_id": str(r.job_id) if r.job_id else None}
                for r in conn.execute(query)
            ]

    @translate_errors
    def due(self, now: datetime) -> list[dict[str, Any]]:
        """Enabled, unpaused schedules whose next tick has come (or is not computed yet)."""
        query = select(schedules).where(
            and_(
                schedules.c.enabled.is_(True),
                schedules.c.paused.is_(False),
                or_(schedules.c.next_tick_at.is_(None), schedules.c.next_tick_at <= now),
            )
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- fires ------------------------------------------------------------------------------

    @translate_errors
    def apply(
        self, plan: FirePlan, make_job: Callable[[datetime], NewJob], now: datetime
    ) -> list[Fired]:
        """Write one schedule's plan in one transaction; ticks another scheduler already
        wrote are skipped (the unique key decides), so any number may race."""
        fired: list[Fired] = []
        with self.engine.begin() as conn:
            row = self._row(conn, plan.name, lock=True)
            if not row["enabled"] or row["paused"]:
                return []
            last = row["last_tick_at"]
            for tick in plan.missed:
                if last is None or tick > last:
                    self._record(conn, plan.name, tick, "missed", None, now)
            for tick in plan.fire:
                if last is not None and tick <= last:
                    continue  # handled by another scheduler already
                fired += self._fire(conn, plan, tick, make_job, now)
            ticks = [*plan.fire, *plan.missed]
            newest = max([t for t in ticks if last is None or t > last], default=last)
            conn.execute(
                update(schedules)
                .where(schedules.c.name == plan.name)
                .values(last_tick_at=newest, next_tick_at=plan.next_at)
            )
        return fired

    def _fire(
        self,
        conn: Connection,
        plan: FirePlan,
        tick: datetime,
        make_job: Callable[[datetime], NewJob],
        now: datetime,
        outcome: str = "enqueued",
    ) -> list[Fired]:
        if not self._record(conn, plan.name, tick, outcome, None, now):
            return []  # this tick is someone else's
        previous = self._previous_job(conn, plan.name, tick)
        if previous is not None and plan.overlap == "skip":
            self._set_fire(conn, plan.name, tick, "skipped", None)
            return [Fired(tick, "skipped", None, None)]
        if previous is not None and plan.overlap == "cancel_previous":
            self.jobs.cancel_in(conn, previous, now)
        job = make_job(tick)
        self.jobs.insert([job], conn)
        self._set_fire(conn, plan.name, tick, outcome, job.id)
        return [Fired(tick, outcome, job.id, job.queue if job.state is State.QUEUED else None)]

    @translate_errors
    def trigger(self, name: str, make_job: Callable[[datetime], NewJob], now: datetime) -> Fired:
        """Fire a schedule now, outside its spec (its overlap policy still applies)."""
        with self.engine.begin() as conn:
            row = self._row(conn, name, lock=True)
            plan = FirePlan(name, [now], [], row["next_tick_at"] or now, row["overlap"])
            fired = self._fire(conn, plan, now, make_job, now, outcome="triggered")
        if not fired:
            raise ScheduleConflict(f"schedule {name!r} was triggered at this instant already")
        return fired[0]

    def _record(
        self, conn: Connection, name: str, tick: datetime, outcome: str, job_id: str | None,
        now: datetime,
    ) -> bool:  # fmt: skip
        stmt = (
            self._insert()(schedule_fires)
            .values(schedule=name, tick_at=tick, outcome=outcome, job_id=job_id, created_at=now)
            .on_conflict_do_nothing()
            .returning(schedule_fires.c.id)
        )
        return conn.execute(stmt).first() is not None

    def _set_fire(
        self, conn: Connection, name: str, tick: datetime, outcome: str, job_id: str | None
    ) -> None:
        conn.execute(
            update(schedule_fires)
            .where(and_(schedule_fires.c.schedule == name, schedule_fires.c.tick_at == tick))
            .values(outcome=outcome, job_id=job_id)
        )

    def _previous_job(self, conn: Connection, name: str, tick: datetime) -> str | None:
        """The job of this schedule's latest earlier fire, if it is still active."""
        query = (
            select(jobs.c.id)
            .select_from(schedule_fires.join(jobs, jobs.c.id == schedule_fires.c.job_id))
            .where(
                and_(
                    schedule_fires.c.schedule == name,
                    schedule_fires.c.tick_at < tick,
                    jobs.c.state.in_([s.value for s in ACTIVE]),
                )
            )
            .order_by(schedule_fires.c.tick_at.desc())
            .limit(1)
        )
        value = conn.execute(query).scalar()
        return str(value) if value is not None else None

    def _row(self, conn: Connection, name: str, lock: bool = False) -> dict[str, Any]:
        if text_problem(name):  # no schedule has such a name, and PostgreSQL cannot compare it
            raise ScheduleNotFound(name)
        query = select(schedules).where(schedules.c.name == name)
        if lock and self.dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise ScheduleNotFound(name)
        return dict(row._mapping)


def _insert_new(conn: Connection, d: dict[str, Any], source: str, now: datetime) -> None:
    """A new schedule, enabled and unpaused; its first tick is computed by the scheduler."""
    conn.execute(
        schedules.insert().values(
            **d,
            source=source,
            enabled=True,
            paused=False,
            created_at=now,
            updated_at=now,
            next_tick_at=None,
        )  # fmt: skip
    )
