"""Retry, cancel and delete by filter, in batches: the client and POST /jobs/bulk against
real databases (and real workers where a job must run or be stopped)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

import conveyor.api.routes.jobs as job_routes
from conveyor import Conveyor, JobNotFound, State
from conveyor.client import EnqueueOptions, EnqueueRequest
from conveyor.core.errors import InvalidBulkRequest
from conveyor.core.ids import new_job_id
from conveyor.core.views import BulkAction
from conveyor.store.tables import attempts, jobs
from tests.api.conftest import error_of, make_api
from tests.conftest import Backend, _backend, libpq_url, wait_for


@pytest.fixture
def pg_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """PostgreSQL alone: for row locks, which SQLite does not have."""
    yield from _backend("postgres", request, tmp_path)


def force(app: Conveyor, ids: list[str], state: State, **columns: Any) -> None:
    """Put jobs straight into ``state`` (with what a run of that kind leaves behind)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"state": state.value, "updated_at": now}
    if state in (State.COMPLETED, State.FAILED, State.CANCELED):
        values.update(finished_at=now, attempt=1, started_at=now)
    if state is State.FAILED:
        values.update(error={"type": "Boom", "message": "it broke"}, stage="s", progress=40.0)
        values.update(message="half way")
    if state is State.RUNNING:
        values.update(attempt=1, started_at=now, worker_id="w-1")
        values.update(lease_expires_at=now + timedelta(hours=1))
    values.update(columns)
    with app.client.jobs.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(**values))


def add_attempt_rows(app: Conveyor, ids: list[str]) -> None:
    rows = [{"job_id": i, "attempt": 1, "outcome": "failed"} for i in ids]
    with app.client.jobs.engine.begin() as conn:
        conn.execute(attempts.insert(), rows)


def attempt_count(app: Conveyor, ids: list[str]) -> int:
    query = select(func.count()).select_from(attempts).where(attempts.c.job_id.in_(ids))
    with app.client.jobs.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def enqueue(app: Conveyor, count: int, job_type: str = "add", **options: Any) -> list[str]:
    return [app.enqueue(job_type, {"a": i}, **options).id for i in range(count)]


def state_of(app: Conveyor, job_id: str) -> State:
    return app.get(job_id).state


# -- retry ----------------------------------------------------------------------------------


def test_retry_by_type_takes_failed_and_canceled_jobs_only_and_workers_run_them(
    backend: Backend,
) -> None:
    app = backend.app()
    failed = enqueue(app, 2, delay="1h")
    canceled = enqueue(app, 1, delay="1h")
    completed, running, waiting = enqueue(app, 3, delay="1h")
    other_type = enqueue(app, 1, "sync_add", delay="1h")
    force(app, failed + other_type, State.FAILED)
    force(app, canceled, State.CANCELED)
    force(app, [completed], State.COMPLETED, result=5)
    force(app, [running], State.RUNNING)

    result = app.client.bulk("retry", type="add")

    assert (result.action, result.changed, result.more) == (BulkAction.RETRY, 3, False)
    for job_id in failed + canceled:
        view = app.get(job_id)
        assert view.state is State.QUEUED
        assert (view.error, view.result, view.stage, view.progress, view.message) == (None,) * 5
        assert view.finished_at is None and view.scheduled_at is None
        assert not view.cancel_requested
    with app.client.jobs.engine.connect() as conn:
        rows = conn.execute(select(jobs.c.attempt, jobs.c.uncharged).where(jobs.c.id == failed[0]))
        assert [tuple(r) for r in rows] == [(1, 1)]  # a fresh budget: the attempt is uncharged
    assert state_of(app, completed) is State.COMPLETED
    assert state_of(app, running) is State.RUNNING
    assert state_of(app, waiting) is State.SCHEDULED
    assert state_of(app, other_type[0]) is State.FAILED
    if app.services.streams is not None:  # dispatched, not left for the feeder to find
        assert set(failed + canceled) <= app.services.streams.held("default", 100)

    backend.worker("--queues", "default")
    for job_id in failed + canceled:
        done = app.wait(job_id, timeout=30)
        assert done.state is State.COMPLETED and done.result == done.payload["a"]


def test_retry_honours_created_after_and_created_before(db_backend: Backend) -> None:
    app = db_backend.app()
    now = app.client.clock.now()
    two_hours_ago = now - timedelta(hours=2)
    request = EnqueueRequest("add", {"a": 1}, EnqueueOptions(delay="1h"))
    old_ns = int(two_hours_ago.timestamp() * 1e9)  # an id minted then, as at the time
    old_jobs = [
        replace(app.client.prepare(request, two_hours_ago), id=new_job_id(old_ns + i))
        for i in range(2)
    ]
    old = [i.id for i in app.client.insert_prepared(old_jobs)]
    new = enqueue(app, 3, delay="1h")
    force(app, old + new, State.FAILED)
    hour_ago = now - timedelta(hours=1)

    assert app.client.bulk("retry", created_after=hour_ago).changed == 3
    assert [state_of(app, i) for i in old] == [State.FAILED] * 2
    assert [state_of(app, i) for i in new] == [State.QUEUED] * 3

    force(app, new, State.FAILED)
    assert app.client.bulk("retry", state="failed", created_before=hour_ago).changed == 2
    assert [state_of(app, i) for i in old] == [State.QUEUED] * 2
    assert [state_of(app, i) for i in new] == [State.FAILED] * 3


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_by_queue_cancels_waiting_jobs_and_stops_the_running_one(
    db_backend: Backend,
) -> None:
    app = db_backend.app()
    db_backend.worker("--queues", "bulkq", "--concurrency", "1")
    running = app.enqueue("sleeper", {"seconds": 60}, queue="bulkq").id
    wait_for(lambda: state_of(app, running) is State.RUNNING, timeout=30, what="a running job")
    queued = enqueue(app, 2, queue="bulkq")  # the worker's one slot is taken
    scheduled = enqueue(app, 1, queue="bulkq", delay="1h")
    elsewhere = enqueue(app, 1, queue="other")

    result = app.client.bulk("cancel", queue="bulkq")

    assert (result.changed, result.more) == (4, False)
    for job_id in queued + scheduled:
        view = app.get(job_id)
        assert view.state is State.CANCELED and view.finished_at is not None
        assert view.error == {"type": "Canceled", "message": "canceled before it ran"}
    assert app.get(running).cancel_requested
    assert app.client.bulk("cancel", queue="bulkq").changed == 0  # nothing to ask twice
    assert app.wait(running, timeout=30).state is State.CANCELED  # the worker stopped it
    assert state_of(app, elsewhere[0]) is State.QUEUED


# -- delete ---------------------------------------------------------------------------------


def test_delete_removes_terminal_jobs_and_their_attempts_only(db_backend: Backend) -> None:
    app = db_backend.app()
    done, failed, canceled, running, queued = enqueue(app, 5, delay="1h")
    force(app, [queued], State.QUEUED)
    other_type = enqueue(app, 1, "sync_add", delay="1h")
    force(app, [done] + other_type, State.COMPLETED)
    force(app, [failed], State.FAILED)
    force(app, [canceled], State.CANCELED)
    force(app, [running], State.RUNNING, attempt=2)
    add_attempt_rows(app, [done, failed, canceled, running] + other_type)

    result = app.client.bulk("delete", type="add")

    assert (result.action, result.changed) == (BulkAction.DELETE, 3)
    for gone in (done, failed, canceled):
        with pytest.raises(JobNotFound):
            app.get(gone)
    assert attempt_count(app, [done, failed, canceled]) == 0
    assert state_of(app, running) is State.RUNNING
    assert attempt_count(app, [running]) == 1  # its earlier attempt stays
    assert state_of(app, queued) is State.QUEUED
    assert state_of(app, other_type[0]) is State.COMPLETED
    assert attempt_count(app, other_type) == 1


def test_a_running_job_is_never_retried_or_deleted(db_backend: Backend) -> None:
    app = db_backend.app()
    running = enqueue(app, 2, delay="1h")
    force(app, running, State.RUNNING)
    assert app.client.bulk("retry").changed == 0
    assert app.client.bulk("retry", state="running").changed == 0
    assert app.client.bulk("delete", everything=True).changed == 0
    assert app.client.bulk("delete", state="running").changed == 0
    assert [state_of(app, i) for i in running] == [State.RUNNING] * 2
    assert not any(app.get(i).cancel_requested for i in running)


# -- batches and bounds ---------------------------------------------------------------------


def test_batches_of_three_change_all_ten_jobs_newest_first(db_backend: Backend) -> None:
    app = db_backend.app()
    made = enqueue(app, 10, delay="1h")
    force(app, made, State.CANCELED)

    assert app.client.bulk("retry", batch_size=3).changed == 10
    assert [state_of(app, i) for i in made] == [State.QUEUED] * 10

    force(app, made, State.CANCELED)
    first = app.client.bulk("retry", batch_size=3, max_batches=2)
    assert (first.changed, first.more) == (6, True) and first.cursor is not None
    newest_first = sorted(made, reverse=True)
    assert [state_of(app, i) for i in newest_first[:6]] == [State.QUEUED] * 6
    assert [state_of(app, i) for i in newest_first[6:]] == [State.CANCELED] * 4
    rest = app.client.bulk("retry", batch_size=3, max_batches=2, cursor=first.cursor)
    assert (rest.changed, rest.more, rest.cursor) == (4, False, None)
    assert [state_of(app, i) for i in made] == [State.QUEUED] * 10


def test_bad_requests_are_typed_errors_and_change_nothing(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    made = enqueue(app, 2, delay="1h")
    force(app, made, State.FAILED)
    bad: list[tuple[str, dict[str, Any]]] = [
        ("explode", {}),
        ("delete", {}),  # every job: only with everything=True
        ("cancel", {}),
        ("retry", {"state": "sleeping"}),
        ("retry", {"colour": "red"}),
        ("retry", {"created_after": datetime(2026, 1, 1)}),  # naive
        ("retry", {"type": ""}),
        ("retry", {"cursor": "not-a-cursor"}),
        ("retry", {"batch_size": 0}),
        ("retry", {"max_batches": 0}),
    ]
    for action, kwargs in bad:
        with pytest.raises(InvalidBulkRequest) as refused:
            app.client.bulk(action, **kwargs)
        assert refused.value.code == "invalid_bulk_request", (action, kwargs)
    assert "all=True" in str(pytest.raises(InvalidBulkRequest, app.client.bulk, "delete").value)
    assert [state_of(app, i) for i in made] == [State.FAILED] * 2
    assert app.client.bulk("delete", everything=True).changed == 2


# -- PostgreSQL row locks -------------------------------------------------------------------


def test_a_row_locked_by_another_transaction_is_skipped_not_waited_for(
    pg_backend: Backend,
) -> None:
    app = pg_backend.app()
    made = enqueue(app, 5, delay="1h")
    force(app, made, State.FAILED)
    locked = made[2]
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        outcome["changed"] = app.client.bulk("retry", type="add").changed
        outcome["seconds"] = time.monotonic() - started

    with psycopg.connect(libpq_url(pg_backend.database_url)) as holder:
        holder.execute("SELECT id FROM conveyor_jobs WHERE id = %s FOR UPDATE", (locked,))
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout=10)
        blocked = thread.is_alive()
        holder.rollback()  # let a blocked bulk call finish before failing
        thread.join(timeout=10)
    assert not blocked, "the bulk action waited on a locked row"
    assert outcome["changed"] == 4 and outcome["seconds"] < 5
    assert state_of(app, locked) is State.FAILED
    assert [state_of(app, i) for i in made if i != locked] == [State.QUEUED] * 4
    assert app.client.bulk("retry", type="add").changed == 1  # free again: taken next time


# -- HTTP API -------------------------------------------------------------------------------


@pytest.fixture
def api_backend(db_backend: Backend) -> Iterator[tuple[TestClient, Conveyor]]:
    conveyor = db_backend.app()
    with make_api(db_backend) as client:
        yield client, conveyor


def test_post_jobs_bulk_answers_the_count_and_goes_on_from_its_cursor(
    api_backend: tuple[TestClient, Conveyor], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, app = api_backend
    made = enqueue(app, 5, delay="1h")
    force(app, made, State.FAILED)
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    body = {"action": "retry", "filter": {"type": "add", "state": "failed", "created_after": since}}

    monkeypatch.setattr(job_routes, "BULK_BATCH", 2)
    monkeypatch.setattr(job_routes, "BULK_MAX_BATCHES", 1)
    first = api.post("/jobs/bulk", json=body)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "action": "retry",
        "changed": 2,
        "more": True,
        "cursor": sorted(made)[-2],
    }
    monkeypatch.setattr(job_routes, "BULK_MAX_BATCHES", 100)
    rest = api.post("/jobs/bulk", json={**body, "cursor": first.json()["cursor"]})
    assert rest.status_code == 200, rest.text
    assert rest.json() == {"action": "retry", "changed": 3, "more": False, "cursor": None}
    assert [state_of(app, i) for i in made] == [State.QUEUED] * 5

    canceled = api.post("/jobs/bulk", json={"action": "cancel", "filter": {"queue": "default"}})
    assert canceled.json()["changed"] == 5
    deleted = api.post("/jobs/bulk", json={"action": "delete", "filter": {}, "all": True})
    assert deleted.status_code == 200 and deleted.json()["changed"] == 5


def test_post_jobs_bulk_refuses_what_it_cannot_do_safely(
    api_backend: tuple[TestClient, Conveyor],
) -> None:
    api, app = api_backend
    made = enqueue(app, 2, delay="1h")
    force(app, made, State.CANCELED)
    for action in ("delete", "cancel"):
        for body in ({"action": action}, {"action": action, "filter": {}, "all": False}):
            error = error_of(api.post("/jobs/bulk", json=body), 422, "invalid_bulk_request")
            assert f"refusing to {action} every job" in error["message"]
            assert "all" in error["message"]
    error_of(api.post("/jobs/bulk", json={"action": "explode"}), 422, "validation_error")
    for when in ("yesterday", "2026-01-01T00:00:00"):
        body = {"action": "retry", "filter": {"created_after": when}}
        error = error_of(api.post("/jobs/bulk", json=body), 422, "validation_error")
        assert "filter.created_after" in error["message"]
    for body in (
        {"action": "retry", "filter": {"colour": "red"}},
        {"action": "retry", "everything": True},
        {"action": "retry", "filter": {"state": "sleeping"}},
        {"action": "delete", "all": "yes"},
    ):
        error_of(api.post("/jobs/bulk", json=body), 422, "validation_error")
    error_of(api.post("/jobs/bulk", json={"action": "retry", "cursor": "x"}), 422, "invalid_cursor")
    error_of(api.post("/jobs/bulk", content=b"action=retry"), 415, "unsupported_media_type")
    assert [state_of(app, i) for i in made] == [State.CANCELED] * 2
    retried = api.post("/jobs/bulk", json={"action": "retry"})  # retry needs no filter
    assert retried.status_code == 200 and retried.json()["changed"] == 2
