"""/queues and /metrics stay bounded whatever the number of queues: a fixed number of
statements, at most a documented number of queues and label pairs (and they say when they
cut), one render at a time however many scrape at once, enqueue unaffected."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from conveyor import Conveyor
from conveyor.api.metrics import EnqueuedCounts
from conveyor.client import EnqueueOptions, EnqueueRequest
from conveyor.core.metrics import new_deltas, observe
from conveyor.core.names import OTHER_QUEUE
from conveyor.store.stats import StatsStore
from tests.api.conftest import api_for, error_of
from tests.conftest import Backend, libpq_url, wait_for

TRUNCATED = "X-Conveyor-Queues-Truncated"


def seed_queues(app: Conveyor, n: int, prefix: str = "q", jobs_each: int = 1) -> None:
    """``n`` distinct queues with ``jobs_each`` queued jobs, enqueued 1,000 at a time."""
    requests = [
        EnqueueRequest("add", {"a": j}, EnqueueOptions(queue=f"{prefix}{i:05d}"))
        for i in range(n)
        for j in range(jobs_each)
    ]
    for start in range(0, len(requests), 1000):
        app.enqueue_many(requests[start : start + 1000])


def seed_counters(app: Conveyor, n: int) -> None:
    """Counters as workers would leave them after finishing one job on each of ``n`` queues."""
    deltas = new_deltas()
    for i in range(n):
        queue = f"c{i:05d}"
        deltas[("jobs_completed_total", "add", queue, "")] += 1
        observe(deltas, "job_run_seconds", "add", queue, 0.01)
    StatsStore(app.client.jobs.engine).add(deltas)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement ``engine`` sends while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def samples(api: TestClient, name: str) -> dict[str, float]:
    """Lines of one /metrics family: the label text -> value."""
    out = {}
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name) :]] = float(value)
    return out


# -- cost -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [10_000, 50], ids=["counted", "estimated"])
def test_views_cost_a_fixed_number_of_statements_whatever_the_queues(
    db_backend: Backend, monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    monkeypatch.setattr("conveyor.store.stats.COUNT_CAP", cap)
    app = db_backend.app()
    engine = app.client.jobs.engine
    seed_queues(app, 3_000)
    seed_counters(app, 3_000)
    with api_for(app) as api, statements(engine) as sent:
        assert api.get("/queues").status_code == 200
        queues_cost = len(sent)
        assert api.get("/metrics").status_code == 200
        metrics_cost = len(sent) - queues_cost
    # One per active state, the last minute, the oldest queued, and when a state is above
    # the cap one discovery and one EXPLAIN; /metrics adds two for counters and workers.
    assert queues_cost <= 12, sent
    assert metrics_cost <= 16, sent


def test_estimates_above_the_cap_still_cover_a_queue_outside_the_sample(
    pg_redis: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.store.stats.COUNT_CAP", 5)
    app = pg_redis.app()
    seed_queues(app, 1, prefix="bulk", jobs_each=40)
    seed_queues(app, 300, prefix="one")
    with api_for(app) as api:
        queues = {q["name"]: q for q in api.get("/queues").json()}
    assert queues["bulk00000"]["estimated"] == ["queued"]
    assert queues["bulk00000"]["counts"]["queued"] >= 5
    assert queues["one00299"]["counts"]["queued"] >= 1  # newer than every sampled job
    assert queues["one00299"]["oldest_queued_age_seconds"] is not None


def test_a_big_queue_newer_than_the_sample_is_kept_whatever_its_name(
    pg_redis: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the cap the counted jobs are the oldest; a big backlog behind them, on a queue
    whose name sorts last, still makes the cut (table statistics know it is big)."""
    monkeypatch.setattr("conveyor.store.stats.COUNT_CAP", 5)
    monkeypatch.setattr("conveyor.store.stats.QUEUE_LIMIT", 10)
    app = pg_redis.app()
    seed_queues(app, 30, prefix="one")
    seed_queues(app, 1, prefix="zzz-big", jobs_each=200)
    with app.client.jobs.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE conveyor_jobs")
    with api_for(app) as api:
        response = api.get("/queues")
    queues = {q["name"]: q for q in response.json()}
    assert response.headers[TRUNCATED] == "true" and len(queues) == 10
    assert queues["zzz-big00000"]["estimated"] == ["queued"]
    assert queues["zzz-big00000"]["counts"]["queued"] > 5


# -- bounded output ---------------------------------------------------------------------------


def test_views_show_the_busiest_queues_up_to_the_limit_and_say_they_cut(
    db_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.store.stats.QUEUE_LIMIT", 5)
    app = db_backend.app()
    with api_for(app) as api:
        seed_queues(app, 3)
        assert api.get("/queues").headers[TRUNCATED] == "false"
        assert samples(api, "conveyor_queues_truncated") == {"": 0.0}

        seed_queues(app, 20, prefix="a")
        seed_queues(app, 1, prefix="zz-busy", jobs_each=3)
        response = api.get("/queues")
        assert response.headers[TRUNCATED] == "true"
        names = [q["name"] for q in response.json()]
        assert names == ["a00000", "a00001", "a00002", "a00003", "zz-busy00000"]
        assert response.json()[-1]["counts"]["queued"] == 3
        depth = samples(api, "conveyor_queue_depth")
        assert {k.split('"')[1] for k in depth} == set(names)
        assert samples(api, "conveyor_queues_truncated") == {"": 1.0}


def test_counters_beyond_the_limit_add_up_under_other(
    db_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.store.stats.COUNTER_PAIRS_LIMIT", 3)
    app = db_backend.app()
    with api_for(app) as api:
        seed_counters(app, 3)
        assert samples(api, "conveyor_counters_folded") == {"": 0.0}
        seed_counters(app, 10)  # c00000..c00002 again, and seven more
        completed = samples(api, "conveyor_jobs_completed_total")
        assert completed == {
            '{queue="c00000",type="add"}': 2.0,
            '{queue="c00001",type="add"}': 2.0,
            '{queue="c00002",type="add"}': 2.0,
            f'{{queue="{OTHER_QUEUE}",type="add"}}': 7.0,
        }
        counts = samples(api, "conveyor_job_run_seconds_count")
        assert counts[f'{{queue="{OTHER_QUEUE}",type="add"}}'] == 7.0
        assert samples(api, "conveyor_counters_folded") == {"": 1.0}


def test_the_enqueue_counter_keeps_its_limit_of_label_pairs(
    sqlite_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.api.metrics.ENQUEUED_PAIRS_LIMIT", 3)
    with api_for(sqlite_backend.app()) as api:
        jobs = [{"type": "add", "payload": {"a": 1}, "queue": f"e{i}"} for i in range(10)]
        assert api.post("/jobs/batch", json={"jobs": jobs}).status_code == 202
        for i in (0, 9):
            body = {"type": "add", "payload": {"a": 1}, "queue": f"e{i}"}
            assert api.post("/jobs", json=body).status_code == 202
        enqueued = samples(api, "conveyor_jobs_enqueued_total")
    assert enqueued == {
        '{queue="e0",type="add"}': 2.0,
        '{queue="e1",type="add"}': 1.0,
        '{queue="e2",type="add"}': 1.0,
        f'{{queue="{OTHER_QUEUE}",type="add"}}': 8.0,
    }


def test_enqueued_counts_fold_only_pairs_first_seen_beyond_the_limit() -> None:
    written: list[dict[tuple[str, str, str, str], float]] = []
    counts = EnqueuedCounts(lambda deltas: written.append(dict(deltas)), max_pairs=2)
    for queue in ("a", "b", "c", "a", "d", "b"):
        counts.add("t", queue)
    counts.add("u", "e", 5)
    counts.flush()  # what its timer has not written yet
    assert added_up(written) == {
        ("jobs_enqueued_total", "t", "a", ""): 2,
        ("jobs_enqueued_total", "t", "b", ""): 2,
        ("jobs_enqueued_total", "t", OTHER_QUEUE, ""): 2,
        ("jobs_enqueued_total", "u", OTHER_QUEUE, ""): 5,
    }


def added_up(written: list[dict[tuple[str, str, str, str], float]]) -> dict[Any, float]:
    total: dict[Any, float] = {}
    for deltas in written:
        for key, n in deltas.items():
            total[key] = total.get(key, 0) + n
    return total


def test_enqueued_counts_reach_the_database_on_their_own_and_survive_a_failed_write() -> None:
    written: list[dict[tuple[str, str, str, str], float]] = []
    failures = [RuntimeError("database down")]

    def add(deltas: Any) -> None:
        if failures:
            raise failures.pop()
        written.append(dict(deltas))

    counts = EnqueuedCounts(add, flush_s=0.05)
    counts.add("t", "a", 2)  # written at once (nothing was for a while), which fails
    counts.add("t", "a", 1)
    key = ("jobs_enqueued_total", "t", "a", "")
    wait_for(lambda: added_up(written).get(key) == 3, timeout=5, what="the timer to retry")
    assert not failures and added_up(written) == {key: 3}


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_scrapes_do_not_starve_enqueue(pg_redis: Backend) -> None:
    """Twelve scrapes at once over 5,000 queues: one render at a time on one connection,
    while POST /jobs keeps answering 202 well within the pool's 5 s checkout timeout."""
    app = pg_redis.app()
    seed_queues(app, 5_000)
    seed_counters(app, 5_000)
    scrapes: list[int] = []
    posts: list[tuple[int, float]] = []
    done = threading.Event()
    start = threading.Barrier(13)
    with api_for(app) as api:

        def scrape() -> None:
            start.wait(10)
            scrapes.append(api.get("/metrics").status_code)

        def post() -> None:
            start.wait(10)
            while not done.is_set() or len(posts) < 5:
                began = time.monotonic()
                status = api.post("/jobs", json={"type": "add", "payload": {"a": 1}}).status_code
                posts.append((status, time.monotonic() - began))

        threads = [threading.Thread(target=scrape) for _ in range(12)]
        poster = threading.Thread(target=post)
        for t in [*threads, poster]:
            t.start()
        for t in threads:
            t.join(120)
        done.set()
        poster.join(60)
    assert scrapes == [200] * 12
    assert {status for status, _ in posts} == {202}, posts
    assert max(seconds for _, seconds in posts) < 2.0, posts


def test_a_view_that_overruns_its_timeout_answers_503_and_frees_its_connection(
    pg_redis: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("conveyor.store.stats.VIEW_STATEMENT_TIMEOUT_MS", 300)
    answers: list[httpx.Response] = []
    with (
        api_for(pg_redis.app()) as api,
        psycopg.connect(libpq_url(pg_redis.database_url)) as blocker,
    ):
        blocker.execute("LOCK TABLE conveyor_jobs IN ACCESS EXCLUSIVE MODE")
        asking = threading.Thread(target=lambda: answers.append(api.get("/queues")))
        began = time.monotonic()
        asking.start()
        asking.join(5)
        waited = time.monotonic() - began
        blocker.rollback()  # a view without a timeout finishes now, and the test with it
        asking.join(30)
        assert waited < 3, "the view waited on the lock instead of timing out"
        error_of(answers[0], 503, "database_unavailable")
        assert api.get("/queues").status_code == 200
