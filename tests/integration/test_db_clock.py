"""The database's clock as a process carries it (``store.clock.DbClock``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from conveyor.store import make_engine
from conveyor.store.clock import DbClock


def test_sqlite_time_is_the_hosts_and_never_runs_backwards(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'clock.db'}")
    clock = DbClock(engine, sync_s=None)
    clock.sync()  # no statement: SQLite's time is this host's
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1
    first = clock.now()
    clock._base = (clock._base or first) - timedelta(seconds=5)  # a measurement that stepped back
    assert clock.now() >= first  # held until time catches up
    engine.dispose()


def test_a_postgres_clock_never_runs_backwards_across_measurements(pg_database: str) -> None:
    engine = make_engine(pg_database)
    clock = DbClock(engine, sync_s=None)
    clock.sync()
    readings = []
    for _ in range(20):
        readings.append(clock.now())
        clock.sync()
    assert readings == sorted(readings)
    first = clock.now()
    clock._base = (clock._base or first) - timedelta(seconds=5)
    assert clock.now() >= first
    engine.dispose()
