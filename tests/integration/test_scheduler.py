"""Periodic jobs through real scheduler processes: each tick fires exactly once."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from conveyor import Conveyor, InvalidPayload, UnknownJobType
from conveyor.core.schedule import InvalidSchedule
from conveyor.scheduler import scheduler_for
from conveyor.store.tables import jobs, schedule_fires, schedules
from tests.apps import periodic
from tests.conftest import Backend, wait_for

APP = "tests.apps.periodic:app"


def periodic_app(b: Backend) -> Conveyor:
    app = Conveyor(b.settings())
    app.registry = periodic.app.registry
    app.schedules = dict(periodic.app.schedules)
    b.apps.append(app)
    return app


def fires(app: Conveyor, name: str) -> list[dict[str, object]]:
    query = (
        select(schedule_fires)
        .where(schedule_fires.c.schedule == name)
        .order_by(schedule_fires.c.tick_at)
    )
    with app.client.jobs.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def test_three_schedulers_fire_each_tick_exactly_once(db_backend: Backend) -> None:
    b = db_backend
    app = periodic_app(b)
    instances = [b.worker(command="scheduler", app=APP) for _ in range(3)]
    wait_for(lambda: len(fires(app, "tick")) >= 2, timeout=30, what="the first ticks")
    started = time.monotonic()
    instances[0].signal(signal.SIGKILL)  # one dies
    time.sleep(3)
    instances[1].signal(signal.SIGSTOP)  # one freezes, perhaps inside a transaction
    time.sleep(4)
    instances[1].signal(signal.SIGCONT)
    time.sleep(4)
    for instance in instances[1:]:
        instance.stop()
    assert time.monotonic() - started >= 11
    rows = [r for r in fires(app, "tick")]
    ticks = [r["tick_at"] for r in rows]
    assert len(ticks) >= 10
    # no gaps while one instance lived, and no tick twice
    assert all(b - a == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:]))  # noqa: B905
    assert {r["outcome"] for r in rows} == {"enqueued"}
    job_ids = [str(r["job_id"]) for r in rows]
    with app.client.jobs.engine.connect() as conn:
        tick_jobs = [
            str(i) for i in conn.execute(select(jobs.c.id).where(jobs.c.type == "tick")).scalars()
        ]
    assert sorted(job_ids) == sorted(tick_jobs)  # one job per tick, none without a tick


def test_overlap_skip_and_cancel_previous(db_backend: Backend) -> None:
    b = db_backend
    app = periodic_app(b)
    b.worker(app=APP, command="worker")
    b.worker(command="scheduler", app=APP)
    wait_for(
        lambda: sum(r["outcome"] == "skipped" for r in fires(app, "slow-skip")) >= 2,
        timeout=30,
        what="overlapping ticks to be skipped",
    )
    wait_for(
        lambda: len([r for r in fires(app, "slow-cancel") if r["job_id"]]) >= 2,
        timeout=30,
        what="a second slow-cancel fire",
    )
    skip_jobs = [str(r["job_id"]) for r in fires(app, "slow-skip") if r["job_id"]]
    views = [app.get(j) for j in skip_jobs]
    spans = sorted(
        (v.started_at, v.finished_at or datetime.now(UTC)) for v in views if v.started_at
    )
    for (_, end), (start, _) in zip(spans, spans[1:]):  # noqa: B905
        assert start >= end  # never two at once
    cancel_jobs = [str(r["job_id"]) for r in fires(app, "slow-cancel") if r["job_id"]]
    first = cancel_jobs[0]
    wait_for(lambda: app.get(first).state.value == "canceled", timeout=15, what="first canceled")


@pytest.mark.parametrize(
    ("policy", "enqueued", "missed"), [("latest", 1, 9), ("all", 10, 0), ("none", 0, 10)]
)
def test_catch_up_after_every_scheduler_was_down(
    db_backend: Backend, policy: str, enqueued: int, missed: int
) -> None:
    app = periodic_app(db_backend)
    app.schedules = {}
    app.schedule("hourly-report", "slow", every="60s", catch_up=policy, payload={"seconds": 0})
    scheduler = scheduler_for(app)
    scheduler.sync()
    now = scheduler.store.db_now()
    if now.second < 6:  # keep this minute's tick late (older than the 5 s grace)
        time.sleep(6 - now.second)
        now = scheduler.store.db_now()
    last = now.replace(second=0, microsecond=0) - timedelta(minutes=10)
    with app.client.jobs.engine.begin() as conn:  # every scheduler was down for ten minutes
        conn.execute(
            update(schedules)
            .where(schedules.c.name == "hourly-report")
            .values(last_tick_at=last, created_at=last, next_tick_at=last)
        )
    scheduler.run_once()
    rows = fires(app, "hourly-report")
    outcomes = [r["outcome"] for r in rows]
    assert outcomes.count("enqueued") == enqueued
    assert outcomes.count("missed") == missed  # recorded, not silently dropped
    if policy == "latest":
        assert rows[-1]["outcome"] == "enqueued"  # the most recent tick is the one fired
    scheduler.run_once()
    assert len(fires(app, "hourly-report")) == len(rows)  # nothing twice


def test_bad_definitions_are_refused_naming_the_problem(db_backend: Backend) -> None:
    app = periodic_app(db_backend)
    with pytest.raises(InvalidSchedule, match="cron"):
        app.schedule("a", "slow", cron="61 * * * *")
    with pytest.raises(InvalidSchedule, match="Mars/Base"):
        app.schedule("b", "slow", cron="0 2 * * *", tz="Mars/Base")
    with pytest.raises(UnknownJobType, match="no_such_job"):
        app.schedule("c", "no_such_job", every="1m")
    with pytest.raises(InvalidPayload, match="seconds"):
        app.schedule("d", "slow", every="1m", payload={"seconds": "soon"})
    with pytest.raises(InvalidSchedule, match="overlap"):
        app.schedule("e", "slow", every="1m", overlap="sometimes")
    assert not {"a", "b", "c", "d", "e"} & set(app.schedules)


def test_removing_a_schedule_from_code_disables_it_and_keeps_history(
    db_backend: Backend,
) -> None:
    app = periodic_app(db_backend)
    scheduler = scheduler_for(app)
    scheduler.sync()
    scheduler.trigger("tick")
    app.schedules.pop("tick")
    scheduler.sync()
    row = scheduler.store.get("tick")
    assert row["enabled"] is False
    assert [f["outcome"] for f in scheduler.store.fires("tick")] == ["triggered"]
    assert all(r["name"] != "tick" for r in scheduler.store.due(scheduler.store.db_now()))


def test_pause_resume_trigger_from_the_command_line(db_backend: Backend) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    b = db_backend
    app = periodic_app(b)
    scheduler_for(app).sync()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor", "schedules", *args, "--app", APP],
            env=b.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert "paused" in cli("pause", "tick").stdout
    listing = subprocess.run(
        [sys.executable, "-m", "conveyor", "schedules", "--app", APP],
        env=b.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "tick" in listing.stdout and "paused" in listing.stdout
    b.worker(command="scheduler", app=APP)
    # The scheduler is live and ticking (its unpaused schedule fires) ...
    wait_for(lambda: len(fires(app, "slow-skip")) >= 2, timeout=20, what="the scheduler to run")
    assert fires(app, "tick") == []  # ... and the paused one fired nothing meanwhile
    assert "triggered" in cli("trigger", "tick").stdout
    assert "resumed" in cli("resume", "tick").stdout
    wait_for(lambda: len(fires(app, "tick")) >= 3, timeout=20, what="ticks after resume")
    missing = cli("pause", "nope")
    assert missing.returncode == 1 and "no schedule named 'nope'" in missing.stderr
