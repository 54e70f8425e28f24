"""The Redis dispatch adapter against a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis

from conveyor.client import EnqueueRequest
from conveyor.dispatch import keys
from conveyor.dispatch.redis import RedisDispatcher
from conveyor.reconciler import StreamFeeder
from conveyor.store import ClaimStore, UpkeepStore
from tests.conftest import Backend, wait_for


def _dispatcher(b: Backend, consumer: str = "w1") -> RedisDispatcher:
    assert b.redis_url
    return RedisDispatcher(b.redis_url, prefix=b.prefix, consumer=consumer)


def test_push_fetch_ack_in_batches(pg_redis: Backend) -> None:
    d = _dispatcher(pg_redis)
    d.push([("a", f"id-a-{i}") for i in range(10)] + [("b", f"id-b-{i}") for i in range(3)])
    got = d.fetch({"a": 4, "b": 5}, block_s=0)
    assert [x.job_id for x in got if x.queue == "a"] == [f"id-a-{i}" for i in range(4)]
    assert [x.job_id for x in got if x.queue == "b"] == [f"id-b-{i}" for i in range(3)]
    other = _dispatcher(pg_redis, "w2")
    rest = other.fetch({"a": 100}, block_s=0)  # a second consumer never sees the same ids
    assert [x.job_id for x in rest] == [f"id-a-{i}" for i in range(4, 10)]
    d.ack(got)
    other.ack(rest)
    client = redis.Redis.from_url(pg_redis.redis_url or "")
    assert client.xlen(keys.queue_stream(pg_redis.prefix, "a")) == 0  # acked entries are gone
    assert client.xpending(keys.queue_stream(pg_redis.prefix, "a"), keys.GROUP)["pending"] == 0


def test_blocking_fetch_wakes_on_push(pg_redis: Backend) -> None:
    d = _dispatcher(pg_redis)
    assert d.fetch({"q": 1}, block_s=0) == []  # creates the group
    pusher = _dispatcher(pg_redis, "client")
    timer = threading.Timer(0.3, lambda: pusher.push([("q", "late")]))
    started = time.monotonic()
    timer.start()
    got = d.fetch({"q": 10}, block_s=5)
    assert [x.job_id for x in got] == ["late"]
    assert time.monotonic() - started < 2


def test_fetch_survives_redis_losing_its_data(pg_redis: Backend) -> None:
    d = _dispatcher(pg_redis)
    d.push([("q", "before")])
    assert [x.job_id for x in d.fetch({"q": 10}, block_s=0)] == ["before"]
    client = redis.Redis.from_url(pg_redis.redis_url or "")
    client.delete(keys.queue_stream(pg_redis.prefix, "q"))  # as if Redis restarted empty
    d.push([("q", "after")])
    got = wait_for(lambda: d.fetch({"q": 10}, block_s=0), timeout=5, what="a fetch after loss")
    assert [x.job_id for x in got] == ["after"]


def test_worker_keeps_going_after_redis_loses_its_streams(pg_redis: Backend) -> None:
    app = pg_redis.app()
    pg_redis.worker()
    assert app.enqueue("add", {"a": 1}).wait(timeout=20).result == 1
    client = redis.Redis.from_url(pg_redis.redis_url or "")
    for key in client.scan_iter(match=f"{pg_redis.prefix}:*"):
        client.delete(key)
    assert app.enqueue("add", {"a": 2}).wait(timeout=20).result == 2


def test_jobs_whose_dispatch_failed_are_redispatched(pg_redis: Backend) -> None:
    # the enqueuer's Redis is unreachable: the job is durable, only its hand-off failed
    broken = pg_redis.app(redis_url="redis://127.0.0.1:1/0")
    handle = broken.enqueue("add", {"a": 5})
    assert broken.get(handle.id).state.value == "queued"
    app = pg_redis.app()
    pg_redis.worker()
    assert app.wait(handle.id, timeout=20).result == 5


def test_jobs_lost_when_redis_restarted_empty_are_redispatched(pg_redis: Backend) -> None:
    app = pg_redis.app()
    handles = [app.enqueue("add", {"a": i}) for i in range(5)]
    client = redis.Redis.from_url(pg_redis.redis_url or "")
    for key in client.scan_iter(match=f"{pg_redis.prefix}:*"):
        client.delete(key)  # Redis lost everything it held
    pg_redis.worker()
    assert [app.wait(h.id, timeout=20).result for h in handles] == list(range(5))


def test_deliveries_a_dead_worker_fetched_are_handed_out_again(pg_redis: Backend) -> None:
    app = pg_redis.app()
    handle = app.enqueue("add", {"a": 9})
    dead = _dispatcher(pg_redis, "dead-worker")
    (fetched,) = dead.fetch({"default": 10}, block_s=0)  # fetched, never claimed nor acked
    assert fetched.job_id == handle.id
    time.sleep(0.2)
    live = _dispatcher(pg_redis, "reconciler")
    assert live.reclaim("default", idle_s=0.1) == 1
    again = live.fetch({"default": 10}, block_s=0)
    assert [d.job_id for d in again] == [handle.id]
    assert live.reclaim("default", idle_s=60) == 0  # fresh deliveries are left alone


def test_one_push_fills_each_queue_up_to_the_window(pg_redis: Backend) -> None:
    assert pg_redis.redis_url
    d = RedisDispatcher(pg_redis.redis_url, prefix=pg_redis.prefix, window=5)
    d.push([("a", f"a{i}") for i in range(8)] + [("b", "b0"), ("a", "a8"), ("b", "b1")])
    d.push([("b", f"b{i}") for i in range(2, 9)])
    got = d.fetch({"a": 100, "b": 100}, block_s=0)
    assert [x.job_id for x in got if x.queue == "a"] == [f"a{i}" for i in range(5)]
    assert [x.job_id for x in got if x.queue == "b"] == [f"b{i}" for i in range(5)]


def test_redis_holds_at_most_the_dispatch_window(pg_redis: Backend) -> None:
    pg_redis.extra_env["CONVEYOR_DISPATCH_WINDOW"] = "50"
    app = pg_redis.app(dispatch_window=50)
    handles = app.enqueue_many([EnqueueRequest("add", {"a": i}) for i in range(400)])
    client = redis.Redis.from_url(pg_redis.redis_url or "")
    stream = keys.queue_stream(pg_redis.prefix, "default")
    assert client.xlen(stream) == 50  # the other 350 wait in PostgreSQL
    pg_redis.worker("--concurrency", "20")
    depths: list[int] = []

    def drained() -> bool:
        depths.append(client.xlen(stream))
        return all(app.get(h.id).terminal for h in handles[-5:])

    wait_for(drained, timeout=60, interval=0.02, what="the backlog fed in and drained")
    assert all(app.get(h.id).result == i for i, h in enumerate(handles))
    assert max(depths) <= 50 and len(depths) > 3


def test_a_lost_id_behind_a_backlog_is_repaired(pg_redis: Backend) -> None:
    pg_redis.extra_env["CONVEYOR_DISPATCH_WINDOW"] = "50"
    app = pg_redis.app(dispatch_window=50)
    lost = app.enqueue("add", {"a": -1})
    client = redis.Redis.from_url(pg_redis.redis_url or "")
    stream = keys.queue_stream(pg_redis.prefix, "default")
    client.delete(stream)  # its entry is gone: the oldest queued job is now undispatched
    app.enqueue_many([EnqueueRequest("sleeper", {"seconds": 0.05}) for _ in range(200)])
    assert client.xlen(stream) == 50
    pg_redis.worker("--concurrency", "2")  # a slow drain: the backlog stays
    started = time.monotonic()
    assert app.wait(lost.id, timeout=20).result == -1
    assert time.monotonic() - started < 10


class Watched:
    """A dispatcher's streams, noting which queues' streams were read back (``held``)."""

    def __init__(self, streams: RedisDispatcher) -> None:
        self.streams = streams
        self.read: list[str] = []

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        self.streams.push(items)

    def depth(self, queue: str) -> int:
        return self.streams.depth(queue)

    def held(self, queue: str, limit: int) -> set[str]:
        self.read.append(queue)
        return self.streams.held(queue, limit)

    def reclaim(self, queue: str, idle_s: float) -> int:
        return self.streams.reclaim(queue, idle_s)


def test_between_full_passes_the_backlog_is_fed_in_id_order_from_where_it_stopped(
    pg_redis: Backend,
) -> None:
    app = pg_redis.app(dispatch_window=50)
    ids = [h.id for h in app.enqueue_many([EnqueueRequest("add", {"a": i}) for i in range(120)])]
    dispatcher = _dispatcher(pg_redis)
    streams = Watched(dispatcher)
    engine = app.client.jobs.engine
    feeder = StreamFeeder(
        UpkeepStore(engine), streams, lambda now: ["default"], 50, app.settings.lease_seconds
    )
    later = datetime.now(UTC) + timedelta(seconds=5)  # every job is old enough to feed
    assert feeder.run_once(later, full=True) == 0  # the stream is full: nothing to add

    def take(n: int) -> list[str]:
        got = dispatcher.fetch({"default": n}, block_s=0)
        dispatcher.ack(got)  # as a worker does once it claimed them
        ClaimStore(engine).claim_ids([d.job_id for d in got], "w", later, 30)
        return [d.job_id for d in got]

    assert take(40) == ids[:40]
    streams.read.clear()
    assert feeder.run_once(later, full=False) == 40  # topped up to the window ...
    assert streams.read == ["default"]  # ... reading the stream once
    streams.read.clear()
    assert take(50) == ids[40:90]
    assert feeder.run_once(later, full=False) == 30  # from where the last pass stopped ...
    assert streams.read == []  # ... without reading the stream back
    assert take(50) == ids[90:]
    assert feeder.run_once(later, full=False) == 0
