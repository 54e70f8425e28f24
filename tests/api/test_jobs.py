"""/jobs and the operational routes over HTTP, on every backend, with real workers."""

from __future__ import annotations

import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from conveyor import Conveyor
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.api.conftest import api_for, enqueue, error_of, job, listed_ids, make_api
from tests.apps.jobs import app as jobs_app
from tests.conftest import Backend, wait_for


def at(text: str | None) -> datetime:
    """A time from a response: always RFC 3339 with a zone."""
    assert text is not None
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, text
    return value


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def finished(api: TestClient, job_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    """Wait until GET /jobs/{id} shows ``state``; return that body."""

    def check() -> dict[str, Any] | None:
        body = job(api, job_id)
        return body if body["state"] == state else None

    result: dict[str, Any] = wait_for(check, timeout=timeout, what=f"job {job_id} to be {state}")
    return result


# -- enqueue and read -------------------------------------------------------------------------


def test_post_is_accepted_with_location_and_get_shows_the_normalised_job(api: TestClient) -> None:
    before = datetime.now(UTC)
    response = api.post("/jobs", json={"type": "add", "payload": {"a": 2}})
    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["id"]
    assert uuid.UUID(job_id).version == 7
    assert body == {
        "id": job_id,
        "state": "queued",
        "created": True,
        "links": {
            "self": f"/jobs/{job_id}",
            "events": f"/jobs/{job_id}/events",
            "cancel": f"/jobs/{job_id}/cancel",
        },
    }
    assert response.headers["Location"] == body["links"]["self"]

    got = api.get(response.headers["Location"])
    assert got.status_code == 200
    view = got.json()
    assert view["id"] == job_id and view["type"] == "add" and view["queue"] == "default"
    assert view["state"] == "queued"
    assert view["payload"] == {"a": 2, "b": 0}  # the default filled in
    assert view["attempts"] == [] and view["attempt"] == 0 and view["max_attempts"] == 4
    assert view["result"] is None and view["error"] is None
    assert view["stage"] is None and view["progress"] is None
    assert view["idempotency_key"] is None and view["cancel_requested"] is False
    assert before - timedelta(seconds=1) <= at(view["created_at"]) <= datetime.now(UTC)
    assert view["scheduled_at"] is None and view["started_at"] is None
    assert view["finished_at"] is None
    assert view["links"] == body["links"]

    low = enqueue(api, "sync_add", {"a": 1, "b": 2})
    assert job(api, low)["queue"] == "low"  # the job type's queue
    other = enqueue(api, "add", {"a": 1}, queue="elsewhere")
    assert job(api, other)["queue"] == "elsewhere"


def test_a_worker_completes_the_job_and_the_api_shows_result_attempt_worker_and_metrics(
    backend: Backend, api: TestClient
) -> None:
    worker = backend.worker("--queues", "default=2,low=1", "--concurrency", "3")
    job_id = enqueue(api, "add", {"a": 2, "b": 3})

    done = finished(api, job_id, "completed")
    assert done["result"] == 5 and done["error"] is None
    assert done["attempt"] == 1 and done["progress"] == 100.0
    (attempt,) = done["attempts"]
    assert attempt["attempt"] == 1 and attempt["outcome"] == "completed"
    assert attempt["error"] is None
    assert at(done["created_at"]) <= at(attempt["started_at"]) <= at(attempt["finished_at"])
    assert at(done["started_at"]) <= at(done["finished_at"])

    def listed() -> list[dict[str, Any]]:
        response = api.get("/workers")
        assert response.status_code == 200, response.text
        return [w for w in response.json() if w["pid"] == worker.proc.pid]

    (me,) = wait_for(listed, timeout=10, what="GET /workers to list the worker")
    assert me["host"] == socket.gethostname()
    assert me["queues"] == {"default": 2, "low": 1} and me["concurrency"] == 3
    assert me["id"] == attempt["worker_id"]
    assert at(me["started_at"]) <= at(me["heartbeat_at"])

    # a completed job can be neither canceled nor retried
    error = error_of(api.post(f"/jobs/{job_id}/cancel"), 409, "illegal_transition")
    assert error["details"]["state"] == "completed"
    error_of(api.post(f"/jobs/{job_id}/retry"), 409, "illegal_transition")

    def completed_metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        response = api.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
        key = ("conveyor_jobs_completed_total", (("queue", "default"), ("type", "add")))
        return samples if key in samples else None

    samples = wait_for(completed_metrics, timeout=15, what="workers to flush their counters")
    add = (("queue", "default"), ("type", "add"))
    assert samples[("conveyor_jobs_enqueued_total", add)] == 1
    assert samples[("conveyor_jobs_completed_total", add)] == 1
    assert samples[("conveyor_job_run_seconds_bucket", tuple(sorted([*add, ("le", "+Inf")])))] == 1
    assert samples[("conveyor_job_run_seconds_count", add)] == 1
    assert samples[("conveyor_workers_alive", ())] >= 1


def test_a_permanent_error_is_shown_with_its_traceback_and_a_failed_job_can_be_retried(
    backend: Backend, api: TestClient
) -> None:
    backend.worker()
    job_id = enqueue(api, "permanent")
    failed = finished(api, job_id, "failed")
    assert failed["max_attempts"] == 6 and failed["attempt"] == 1  # never retried
    error = failed["error"]
    assert error["type"] == "Permanent" and error["message"] == "bad input, never retry"
    assert "Traceback" in error["traceback"] and "Permanent" in error["traceback"]
    (attempt,) = failed["attempts"]
    assert attempt["outcome"] == "error"
    assert attempt["error"]["type"] == "Permanent"
    assert attempt["error"]["message"] == "bad input, never retry"
    assert "bad input, never retry" in attempt["error"]["traceback"]

    retried = api.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "queued" and retried.json()["error"] is None
    again = wait_for(
        lambda: len((j := job(api, job_id))["attempts"]) == 2 and j["state"] == "failed" and j,
        timeout=20,
        what="the retried job to fail again",
    )
    assert [a["attempt"] for a in again["attempts"]] == [1, 2]  # history kept


# -- idempotency ------------------------------------------------------------------------------


def test_idempotency_key_by_header_or_field_returns_the_existing_job(api: TestClient) -> None:
    body = {"type": "add", "payload": {"a": 1}}
    first = api.post("/jobs", json=body, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202 and first.json()["created"] is True
    job_id = first.json()["id"]

    again = api.post("/jobs", json=body, headers={"Idempotency-Key": "order-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job_id and again.json()["created"] is False
    assert again.headers["Location"] == f"/jobs/{job_id}"
    assert job(api, job_id)["idempotency_key"] == "order-1"

    conflict = api.post(
        "/jobs", json={"type": "add", "payload": {"a": 2}}, headers={"Idempotency-Key": "order-1"}
    )
    error = error_of(conflict, 422, "idempotency_conflict")
    assert error["details"]["job_id"] == job_id

    keyed = {**body, "idempotency_key": "order-2"}
    second = api.post("/jobs", json=keyed)
    assert second.status_code == 202
    repeat = api.post("/jobs", json=keyed)
    assert repeat.status_code == 200 and repeat.json()["id"] == second.json()["id"]
    both = api.post("/jobs", json=keyed, headers={"Idempotency-Key": "order-2"})
    assert both.status_code == 200 and both.json()["id"] == second.json()["id"]

    mismatch = api.post("/jobs", json=keyed, headers={"Idempotency-Key": "order-3"})
    error_of(mismatch, 422, "idempotency_key_mismatch")
    assert sorted(listed_ids(api)) == sorted([job_id, second.json()["id"]])


def test_twenty_concurrent_posts_with_one_key_create_exactly_one_job(api: TestClient) -> None:
    barrier = threading.Barrier(20)

    def post(_: int) -> Any:
        barrier.wait(10)
        return api.post(
            "/jobs",
            json={"type": "add", "payload": {"a": 7}},
            headers={"Idempotency-Key": "once"},
        )

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [202], [
        r.text for r in responses if r.status_code not in (200, 202)
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert [r.json()["created"] for r in responses].count(True) == 1
    assert listed_ids(api) == [responses[0].json()["id"]]


@pytest.mark.parametrize("poison", [{"delay": 1e300}, {"queue": "q\0"}], ids=["delay", "queue"])
def test_one_bad_request_does_not_fail_concurrent_ones(
    backend: Backend, api: TestClient, poison: dict[str, Any]
) -> None:
    barrier = threading.Barrier(40)

    def post(i: int) -> Any:
        barrier.wait(10)
        extra = poison if i == 20 else {}
        return api.post("/jobs", json={"type": "add", "payload": {"a": i}, **extra})

    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(post, range(40)))
    good = [r for i, r in enumerate(responses) if i != 20]
    assert [r.status_code for r in good] == [202] * 39
    assert len(listed_ids(api)) == 39


# -- scheduling and options -------------------------------------------------------------------


def test_delay_run_at_max_attempts_and_timeout_are_reflected(api: TestClient) -> None:
    delayed = api.post("/jobs", json={"type": "add", "payload": {"a": 1}, "delay": 3600})
    assert delayed.status_code == 202 and delayed.json()["state"] == "scheduled"
    view = job(api, delayed.json()["id"])
    assert view["state"] == "scheduled"
    wait = at(view["scheduled_at"]) - at(view["created_at"])
    assert timedelta(seconds=3599) <= wait <= timedelta(seconds=3601)

    later = enqueue(api, "add", {"a": 1}, delay="10m")
    view = job(api, later)
    wait = at(view["scheduled_at"]) - at(view["created_at"])
    assert view["state"] == "scheduled"
    assert timedelta(seconds=599) <= wait <= timedelta(seconds=601)

    run_at = enqueue(api, "add", {"a": 1}, run_at="2031-01-02T03:04:05+02:00")
    view = job(api, run_at)
    assert view["state"] == "scheduled"
    assert at(view["scheduled_at"]) == datetime(2031, 1, 2, 1, 4, 5, tzinfo=UTC)

    past = enqueue(api, "add", {"a": 1}, run_at="2020-01-01T00:00:00Z")
    assert job(api, past)["state"] == "queued"

    tuned = enqueue(api, "add", {"a": 1}, max_attempts=7, timeout="90s")
    view = job(api, tuned)
    assert view["max_attempts"] == 7 and view["timeout_s"] == 90.0
    assert job(api, enqueue(api, "add", {"a": 1}, timeout=2.5))["timeout_s"] == 2.5


def test_enqueue_options_are_validated(sqlite_api: TestClient) -> None:
    api = sqlite_api
    naive = api.post(
        "/jobs", json={"type": "add", "payload": {"a": 1}, "run_at": "2031-01-02T03:04:05"}
    )
    assert "timezone" in error_of(naive, 422)["message"]
    both = {"type": "add", "payload": {"a": 1}, "run_at": "2031-01-02T03:04:05Z", "delay": 5}
    error_of(api.post("/jobs", json=both), 422)
    for bad in (
        {"delay": "soon"},
        {"timeout": "forever"},
        {"max_attempts": 0},
        {"max_attempts": 1001},
        {"queue": ""},
        {"idempotency_key": ""},
        {"unknown_option": 1},
        {"payload": [1, 2]},
    ):
        error_of(api.post("/jobs", json={"type": "add", "payload": {"a": 1}, **bad}), 422)
    error_of(api.post("/jobs", json=[{"type": "add"}]), 422)
    long_key = {"Idempotency-Key": "k" * 256}
    error_of(api.post("/jobs", json={"type": "add", "payload": {"a": 1}}, headers=long_key), 422)
    assert listed_ids(api) == []


# -- batches ----------------------------------------------------------------------------------


def test_batch_enqueues_all_jobs_or_none(api: TestClient) -> None:
    good = [
        {"type": "add", "payload": {"a": 1}},
        {"type": "sync_add", "payload": {"a": 2}},
        {"type": "staged", "delay": 60},
    ]
    response = api.post("/jobs/batch", json={"jobs": good})
    assert response.status_code == 202, response.text
    accepted = response.json()["jobs"]
    assert [j["state"] for j in accepted] == ["queued", "queued", "scheduled"]
    assert all(j["created"] and j["links"]["self"] == f"/jobs/{j['id']}" for j in accepted)
    ids = [j["id"] for j in accepted]
    assert listed_ids(api) == ids[::-1]
    assert [job(api, i)["type"] for i in ids] == ["add", "sync_add", "staged"]

    one_bad = [good[0], good[1], {"type": "add", "payload": {"a": "many"}}, good[0]]
    error = error_of(api.post("/jobs/batch", json={"jobs": one_bad}), 422, "invalid_batch")
    (problem,) = error["details"]["errors"]
    assert problem["index"] == 2 and problem["code"] == "invalid_payload"
    assert [e["field"] for e in problem["details"]["errors"]] == ["a"]
    assert listed_ids(api) == ids[::-1]  # nothing of the refused batch was written

    # refused only while inserting (the key is taken): the whole batch is rolled back too
    api.post("/jobs", json={"type": "add", "payload": {"a": 9}, "idempotency_key": "taken"})
    before = listed_ids(api)
    clash = [good[0], {"type": "add", "payload": {"a": 8}, "idempotency_key": "taken"}]
    error_of(api.post("/jobs/batch", json={"jobs": clash}), 422, "idempotency_conflict")
    assert listed_ids(api) == before


def test_batch_size_is_limited(sqlite_api: TestClient) -> None:
    item = {"type": "noop"}
    error_of(sqlite_api.post("/jobs/batch", json={"jobs": [item] * 1001}), 422)
    error_of(sqlite_api.post("/jobs/batch", json={"jobs": []}), 422)
    two_bad = [item, {"type": "nope"}, item, {"type": "add"}]
    error = error_of(sqlite_api.post("/jobs/batch", json={"jobs": two_bad}), 422, "invalid_batch")
    assert [(e["index"], e["code"]) for e in error["details"]["errors"]] == [
        (1, "unknown_job_type"),
        (3, "invalid_payload"),
    ]
    assert listed_ids(sqlite_api) == []
    full = sqlite_api.post("/jobs/batch", json={"jobs": [item] * 1000})
    assert full.status_code == 202 and len(full.json()["jobs"]) == 1000


# -- listing ----------------------------------------------------------------------------------


def test_list_filters_by_state_type_queue_and_creation_time(api: TestClient) -> None:
    a = enqueue(api, "add", {"a": 1})
    b = enqueue(api, "sync_add", {"a": 1})
    c = enqueue(api, "add", {"a": 2}, delay="1h")
    boundary = at(job(api, c)["created_at"]) + timedelta(microseconds=1)
    wait_for(lambda: datetime.now(UTC) > boundary, what="the clock to pass the boundary")
    d = enqueue(api, "add", {"a": 3})
    assert api.post(f"/jobs/{d}/cancel").status_code == 200

    assert listed_ids(api) == [d, c, b, a]  # newest first
    assert listed_ids(api, state="queued") == [b, a]
    assert listed_ids(api, state="scheduled") == [c]
    assert listed_ids(api, state="canceled") == [d]
    assert listed_ids(api, state="failed") == []
    assert listed_ids(api, type="sync_add") == [b]
    assert listed_ids(api, queue="low") == [b]
    assert listed_ids(api, queue="default") == [d, c, a]
    assert listed_ids(api, type="add", state="queued") == [a]
    assert listed_ids(api, type="nope") == []

    assert listed_ids(api, created_after=iso(boundary)) == [d]
    assert listed_ids(api, created_before=iso(boundary)) == [c, b, a]
    india = boundary.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert "+05:30" in india
    assert listed_ids(api, created_after=india) == [d]
    assert listed_ids(api, created_before=india) == [c, b, a]
    assert listed_ids(api, created_after=iso(boundary), created_before=iso(boundary)) == []
    long_ago = iso(boundary - timedelta(days=1))
    assert listed_ids(api, created_after=long_ago, state="queued") == [b, a]

    page = api.get("/jobs", params={"type": "add", "limit": 2}).json()
    item = page["items"][0]
    assert item["id"] == d and item["payload"] == {"a": 3, "b": 0}
    assert item["links"]["self"] == f"/jobs/{d}"


def test_keyset_pagination_walks_every_job_newest_first(api: TestClient) -> None:
    response = api.post("/jobs/batch", json={"jobs": [{"type": "noop"}] * 54})
    assert response.status_code == 202
    ids = [j["id"] for j in response.json()["jobs"]] + [enqueue(api, "noop")]

    default = api.get("/jobs").json()
    assert len(default["items"]) == 50
    assert default["next_cursor"] == default["items"][-1]["id"]
    everything = api.get("/jobs", params={"limit": 1000}).json()
    assert [j["id"] for j in everything["items"]] == ids[::-1]
    assert everything["next_cursor"] is None

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/jobs", params=params).json()
        pages.append([j["id"] for j in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [7] * 7 + [6]
    walked = [i for p in pages for i in p]
    assert walked == ids[::-1] and len(set(walked)) == 55


def test_list_parameters_are_validated(sqlite_api: TestClient) -> None:
    api = sqlite_api
    assert api.get("/jobs", params={"limit": 1000}).status_code == 200
    for params, code in (
        ({"limit": 1001}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"limit": "many"}, "validation_error"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"state": "sleeping"}, "validation_error"),
        ({"created_after": "2026-01-01T00:00:00"}, "validation_error"),
        ({"created_before": "2026-01-01T00:00:00"}, "validation_error"),
        ({"created_after": "yesterday"}, "validation_error"),
    ):
        error_of(api.get("/jobs", params=params), 422, code)


# -- cancel and retry -------------------------------------------------------------------------


def test_cancel_by_post_or_delete_is_repeatable_and_retry_needs_a_finished_job(
    api: TestClient,
) -> None:
    queued = enqueue(api, "add", {"a": 1})
    error = error_of(api.post(f"/jobs/{queued}/retry"), 409, "illegal_transition")
    assert error["details"]["state"] == "queued"

    for _ in range(2):
        canceled = api.post(f"/jobs/{queued}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["id"] == queued and canceled.json()["state"] == "canceled"
    view = job(api, queued)
    assert view["state"] == "canceled" and view["error"]["type"] == "Canceled"
    assert view["finished_at"] is not None

    scheduled = enqueue(api, "add", {"a": 1}, delay=600)
    for _ in range(2):
        deleted = api.delete(f"/jobs/{scheduled}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["state"] == "canceled"
    assert job(api, scheduled)["state"] == "canceled"

    retried = api.post(f"/jobs/{queued}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "queued"
    assert job(api, queued)["error"] is None


def test_unknown_jobs_are_404(api: TestClient) -> None:
    unknown = str(uuid.uuid4())
    for path in (f"/jobs/{unknown}", "/jobs/not-a-uuid", "/jobs/%20", "/jobs/1"):
        error = error_of(api.get(path), 404, "job_not_found")
        assert "details" in error
    error_of(api.post(f"/jobs/{unknown}/cancel"), 404, "job_not_found")
    error_of(api.delete(f"/jobs/{unknown}"), 404, "job_not_found")
    error_of(api.post(f"/jobs/{unknown}/retry"), 404, "job_not_found")
    error_of(api.post("/jobs/not-a-uuid/retry"), 404, "job_not_found")
    error_of(api.get(f"/jobs/{unknown}/events"), 404, "job_not_found")


# -- system routes ----------------------------------------------------------------------------


def test_job_types_describe_every_registered_type(sqlite_api: TestClient) -> None:
    response = sqlite_api.get("/job-types")
    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()}
    assert list(types) == sorted(jobs_app.registry.names())

    truncate = types["truncate_table"]["payload_schema"]
    assert set(truncate["properties"]) == {"schema", "table"}
    assert truncate["properties"]["schema"]["type"] == "string"
    assert sorted(truncate["required"]) == ["schema", "table"]

    add = types["add"]
    assert (add["queue"], add["max_attempts"], add["timeout_s"], add["stages"]) == (
        "default", 4, None, []
    )  # fmt: skip
    assert add["payload_schema"]["properties"]["b"]["default"] == 0
    assert add["payload_schema"]["required"] == ["a"]
    assert types["sync_add"]["queue"] == "low"
    assert types["staged"]["stages"] == ["crawling", "parsing", "analyzing", "embedding"]
    assert types["staged"]["max_attempts"] == 1
    assert types["slow_async"]["timeout_s"] == 0.5
    assert (types["flaky"]["backoff_base_s"], types["flaky"]["backoff_cap_s"]) == (0.2, 1.0)
    assert types["weighted_critical"]["queue"] == "critical"


def test_queues_count_jobs_by_queue_and_state(api: TestClient) -> None:
    enqueue(api, "add", {"a": 1})
    enqueue(api, "add", {"a": 2})
    enqueue(api, "add", {"a": 3}, delay=600)
    enqueue(api, "sync_add", {"a": 1})
    enqueue(api, "weighted_critical", {"n": 1})
    gone = enqueue(api, "weighted_critical", {"n": 2})
    api.post(f"/jobs/{gone}/cancel")

    response = api.get("/queues")
    assert response.status_code == 200
    queues = {q["name"]: q for q in response.json()}
    assert set(queues) == {"default", "low", "critical"}
    zero = {"scheduled": 0, "queued": 0, "running": 0, "retrying": 0}
    assert queues["default"]["counts"] == {**zero, "queued": 2, "scheduled": 1}
    assert queues["low"]["counts"] == {**zero, "queued": 1}
    assert queues["critical"]["counts"] == {**zero, "queued": 1}
    assert queues["default"]["oldest_queued_age_seconds"] >= 0
    assert queues["default"]["completed_last_minute"] == 0


def test_queue_counts_above_the_cap_are_estimated_not_counted(
    pg_redis: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog of millions must not be counted row by row on every /queues or /metrics:
    above COUNT_CAP the count comes from the planner's statistics and says so."""
    monkeypatch.setattr("conveyor.store.stats.COUNT_CAP", 5)
    with make_api(pg_redis) as api:
        response = api.post(
            "/jobs/batch", json={"jobs": [{"type": "add", "payload": {"a": 1}}] * 40}
        )
        assert response.status_code == 202
        enqueue(api, "sync_add", {"a": 1})
        engine = make_engine(pg_redis.database_url)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE conveyor_jobs"))
        engine.dispose()
        queues = {q["name"]: q for q in api.get("/queues").json()}
        assert queues["default"]["estimated"] == ["queued"]
        # The estimate reads table statistics: near 40, and never below what was seen.
        assert 5 <= queues["default"]["counts"]["queued"] <= 80
        assert queues["default"]["counts"]["running"] == 0
        assert queues["low"]["counts"]["queued"] >= 1  # a queue outside the sample still shows
        depth = [
            line
            for line in api.get("/metrics").text.splitlines()
            if line.startswith('conveyor_queue_depth{queue="default",state="queued"}')
        ]
        assert len(depth) == 1 and float(depth[0].split()[-1]) >= 5


def test_health_and_readiness(backend: Backend, api: TestClient) -> None:
    health = api.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["database"]["ok"] is True
    assert body["migrations"] == {"ok": True, "detail": None}
    if backend.name == "postgres+redis":
        assert body["redis"]["ok"] is True
    else:
        assert body["redis"] is None


def test_not_ready_while_the_schema_is_missing_or_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    with api_for(Conveyor(Settings(database_url=url))) as client:
        missing = client.get("/readyz")
        assert missing.status_code == 503 and missing.headers["Retry-After"] == "5"
        assert missing.json()["database"]["ok"] is True
        assert "no Conveyor tables" in missing.json()["migrations"]["detail"]
        upgrade(engine, "0007")
        behind = client.get("/readyz").json()["migrations"]
        assert behind["ok"] is False and "at revision 0007" in behind["detail"]
        assert "conveyor db upgrade" in behind["detail"]
        upgrade(engine)
        assert client.get("/readyz").status_code == 200
    engine.dispose()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/queues", "/workers", "/metrics"])
def test_system_routes_answer_on_an_empty_database(sqlite_api: TestClient, path: str) -> None:
    response = sqlite_api.get(path)
    assert response.status_code == 200, response.text
