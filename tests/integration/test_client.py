"""The client against real databases: validation, idempotency, transactions, listing."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.orm import Session

from conveyor import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidPayload,
    JobNotFound,
    PayloadTooLarge,
    State,
    UnknownJobType,
)
from conveyor.store.tables import jobs
from tests.apps.jobs import add, truncate_table
from tests.conftest import Backend

orders_meta = MetaData()
orders = Table(
    "test_orders", orders_meta, Column("id", Integer, primary_key=True), Column("name", String(50))
)


def job_count(app) -> int:  # type: ignore[no-untyped-def]
    with app.client.jobs.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(jobs)).scalar_one())


def test_bad_payloads_are_refused_and_nothing_is_written(backend: Backend) -> None:
    app = backend.app(max_payload_bytes=1000)
    with pytest.raises(InvalidPayload) as bad:
        app.enqueue("add", {"a": "not a number", "c": 1})
    fields = {e["field"] for e in bad.value.errors}
    assert fields == {"a", "c"}
    assert "a:" in str(bad.value) and "c:" in str(bad.value)
    with pytest.raises(InvalidPayload):
        app.enqueue("add", {})  # a is required
    with pytest.raises(UnknownJobType) as unknown:
        app.enqueue("no_such_job", {})
    assert "add" in str(unknown.value)
    with pytest.raises(PayloadTooLarge):
        app.enqueue("truncate_table", {"schema": "s" * 2000, "table": "t"})
    with pytest.raises(InvalidPayload):  # one bad item refuses the whole batch
        app.enqueue_many([add.request(a=1), add.request(a="x"), add.request(a=3)])
    assert job_count(app) == 0


def test_enqueue_many_writes_all_in_one_go(backend: Backend) -> None:
    app = backend.app()
    handles = app.enqueue_many([add.request(a=i) for i in range(50)])
    assert len({h.id for h in handles}) == 50
    assert job_count(app) == 50
    assert app.get(handles[0].id).payload == {"a": 0, "b": 0}


def test_enqueue_options_do_not_collide_with_payload(backend: Backend) -> None:
    app = backend.app()
    add_fn = add.__class__(app, add.job_type)  # bind the test job type to this backend's app
    handle = add_fn.options(queue="other", delay="10m", retries=0, timeout="5s").enqueue(a=1)
    view = app.get(handle.id)
    assert view.queue == "other" and view.state is State.SCHEDULED
    assert view.max_attempts == 1 and view.timeout_s == 5.0
    assert view.payload == {"a": 1, "b": 0}
    assert view.scheduled_at and view.scheduled_at > datetime.now(UTC) + timedelta(minutes=9)


def test_idempotency_key_same_payload_same_job_different_payload_conflict(
    backend: Backend,
) -> None:
    app = backend.app()
    first = app.enqueue("add", {"a": 1}, idempotency_key="order-1")
    again = app.enqueue("add", {"a": 1}, idempotency_key="order-1")
    assert again.id == first.id
    with pytest.raises(IdempotencyConflict) as conflict:
        app.enqueue("add", {"a": 2}, idempotency_key="order-1")
    assert conflict.value.details["job_id"] == first.id
    assert job_count(app) == 1


def test_concurrent_enqueues_with_one_key_make_one_job(backend: Backend) -> None:
    app = backend.app()
    app.get  # noqa: B018 - connect before the threads start
    ids: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def enqueue() -> None:
        try:
            barrier.wait()
            ids.append(app.enqueue("add", {"a": 7}, idempotency_key="race").id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ids) == 50 and len(set(ids)) == 1
    assert job_count(app) == 1


def test_transactional_enqueue_commits_and_rolls_back_with_the_caller(backend: Backend) -> None:
    app = backend.app()
    engine = app.client.jobs.engine
    orders_meta.create_all(engine)
    fn = truncate_table.__class__(app, truncate_table.job_type)
    with engine.begin() as conn:
        conn.execute(orders.insert().values(id=1, name="kept"))
        kept = fn.options(connection=conn).enqueue(schema="public", table="kept")
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(orders.insert().values(id=2, name="lost"))
        lost = fn.options(connection=conn).enqueue(schema="public", table="lost")
        raise RuntimeError("the caller's transaction fails")
    with Session(engine) as session:
        session.execute(orders.insert().values(id=3, name="session"))
        in_session = fn.options(connection=session).enqueue(schema="public", table="s")
        session.commit()
    with Session(engine) as session:
        session.execute(orders.insert().values(id=4, name="rolled back"))
        rolled = fn.options(connection=session).enqueue(schema="public", table="r")
        session.rollback()
    assert app.get(kept.id).state is State.QUEUED
    assert app.get(in_session.id).state is State.QUEUED
    for gone in (lost, rolled):
        with pytest.raises(JobNotFound):
            app.get(gone.id)
    with engine.connect() as conn:
        assert sorted(conn.execute(select(orders.c.id)).scalars()) == [1, 3]
    # and the committed ones really run
    backend.worker("--queues", "default")
    assert app.wait(kept.id, timeout=20).result == "public.kept"
    assert app.wait(in_session.id, timeout=20).state is State.COMPLETED
    orders_meta.drop_all(engine)


def test_list_filters_and_keyset_pagination(backend: Backend) -> None:
    app = backend.app()
    made = [app.enqueue("add", {"a": i}).id for i in range(7)]
    other = app.enqueue("sync_add", {"a": 1}).id
    app.cancel(made[0])
    page = app.list(type="add", limit=3)
    assert [v.id for v in page.items] == made[::-1][:3]
    seen = [v.id for v in page.items]
    while page.next_cursor:
        page = app.list(type="add", limit=3, cursor=page.next_cursor)
        seen += [v.id for v in page.items]
    assert seen == made[::-1]
    assert [v.id for v in app.list(state="canceled").items] == [made[0]]
    assert [v.id for v in app.list(queue="low").items] == [other]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert app.list(created_after=later).items == []
    assert len(app.list(created_before=later, limit=1000).items) == 8


def test_illegal_transitions_and_unknown_ids_are_typed_errors(backend: Backend) -> None:
    app = backend.app()
    handle = app.enqueue("add", {"a": 1})
    with pytest.raises(IllegalTransition) as illegal:
        app.retry(handle.id)
    assert illegal.value.state == "queued"
    with pytest.raises(JobNotFound):
        app.get("00000000-0000-7000-8000-000000000000")
    with pytest.raises(JobNotFound):
        app.get("not-a-uuid")
    backend.worker()
    assert handle.wait(timeout=20).state is State.COMPLETED
    with pytest.raises(IllegalTransition):
        app.cancel(handle.id)


def test_async_twins_do_not_block_the_loop(backend: Backend) -> None:
    app = backend.app()
    fn = add.__class__(app, add.job_type)

    async def main() -> tuple[str, State, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        handle = await fn.aenqueue(a=2, b=2)
        view = await app.aget(handle.id)
        canceled = await app.acancel(handle.id)
        page = await app.alist(state="canceled")
        task.cancel()
        assert [v.id for v in page.items] == [handle.id]
        return view.id, canceled.state, ticks

    job_id, state, ticks = asyncio.run(main())
    assert state is State.CANCELED and ticks > 0


def test_unreachable_database_is_a_typed_error_and_fast(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from conveyor import ConfigurationError, Conveyor, DatabaseUnavailable
    from tests.apps.jobs import app as jobs_app

    down = Conveyor(database_url="postgresql://root@127.0.0.1:1/none")
    down.registry = jobs_app.registry
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as err:
        down.enqueue("add", {"a": 1})
    assert time.monotonic() - started < 5.5
    assert "unreachable" in err.value.message and err.value.code == "database_unavailable"
    empty = Conveyor(database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    empty.registry = jobs_app.registry
    with pytest.raises(ConfigurationError, match="conveyor db upgrade"):
        empty.enqueue("add", {"a": 1})
