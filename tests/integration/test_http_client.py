"""conveyor.http against a real `conveyor api` process and a real worker."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest

from conveyor import (
    ConveyorError,
    IdempotencyConflict,
    IllegalTransition,
    InvalidPayload,
    JobNotFound,
    JobView,
    Page,
    State,
    UnknownJobType,
    WaitTimeout,
)
from conveyor.http import (
    AsyncClient,
    Client,
    Forbidden,
    JobRequest,
    ServerUnreachable,
    Unauthorized,
)
from conveyor.http.errors import error_for
from tests.conftest import Backend, wait_for

LIFECYCLE = ["scheduled", "queued", "running", "completed"]
MISSING = "01a216b0-0000-7000-8000-000000000000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(backend: Backend, **env: str) -> str:
    """`conveyor api` on a free port (stopped with the backend); its base URL once healthy."""
    port = _free_port()
    server = backend.worker("--port", str(port), command="api", **env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"the API exited:\n{server.log()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, what="the API to answer /healthz")
    return url


@pytest.fixture(params=["sqlite", "postgres+redis"])
def api(request: pytest.FixtureRequest) -> Iterator[str]:
    """An API and a worker on SQLite, then on PostgreSQL + Redis."""
    name = "sqlite_backend" if request.param == "sqlite" else "pg_redis"
    backend: Backend = request.getfixturevalue(name)
    url = _serve(backend)
    backend.worker()
    yield url


def in_order(seen: list[str], order: list[str]) -> bool:
    collapsed = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    positions = [order.index(s) for s in collapsed]
    return positions == sorted(set(positions))


def test_enqueue_wait_follow_list_cancel_retry(api: str) -> None:
    with Client(api) as client:
        accepted = client.enqueue("add", {"a": 2, "b": 3})
        assert accepted.created and accepted.state is State.QUEUED
        done = client.wait(accepted.id, timeout=30)
        assert isinstance(done, JobView) and done.state is State.COMPLETED
        assert done.result == 5 and [a.outcome for a in done.attempts] == ["completed"]
        assert done.created_at.tzinfo is not None and done.finished_at is not None

        staged = client.enqueue("staged", {"pause": 0.3}, delay=1)  # followed from the start
        events = list(client.events(staged.id))
        states = [e["state"] for e in events]
        assert in_order(states, LIFECYCLE) and states[0] == "scheduled", states
        assert states[-1] == "completed" and "running" in states, states
        assert {e["event"] for e in events} == {"state", "progress"}
        assert events[-1]["result"] == {"done": "yes"} and events[-1]["id"] == staged.id

        later = client.enqueue_many(
            [JobRequest("sync_add", {"a": i}, delay="1h") for i in range(5)]
        )
        assert [a.state for a in later] == [State.SCHEDULED] * 5
        pages = list(client.pages(type="sync_add", state="scheduled", limit=2))
        assert [len(p.items) for p in pages] == [2, 2, 1] and isinstance(pages[0], Page)
        listed = [v.id for p in pages for v in p.items]
        assert listed == [a.id for a in reversed(later)]  # newest first
        assert client.list(type="sync_add", limit=1000).next_cursor is None

        canceled = client.cancel(later[0].id)
        assert canceled.state is State.CANCELED
        retried = client.retry(later[0].id)
        assert retried.state is State.QUEUED
        assert client.wait(later[0].id, timeout=30).result == 0
        bulk = client.bulk("cancel", type="sync_add", state="scheduled")
        assert bulk.changed == 4 and not bulk.more

        first = client.enqueue("add", {"a": 7}, idempotency_key="order-7")
        again = client.enqueue("add", {"a": 7}, idempotency_key="order-7")
        assert again.id == first.id and first.created and not again.created
        with pytest.raises(IdempotencyConflict):
            client.enqueue("add", {"a": 8}, idempotency_key="order-7")
        with pytest.raises(WaitTimeout):
            client.wait(client.enqueue("add", {"a": 1}, delay="1h").id, timeout=0.2)


def test_errors_are_the_python_clients_classes(sqlite_backend: Backend) -> None:
    url = _serve(sqlite_backend, CONVEYOR_API_TOKENS="s3cret", CONVEYOR_READONLY_TOKENS="look")
    with Client(url, token="s3cret") as client:
        with pytest.raises(UnknownJobType, match="unknown job type 'nope'") as unknown:
            client.enqueue("nope")
        assert "add" in unknown.value.details["known"]
        with pytest.raises(InvalidPayload) as invalid:
            client.enqueue("add", {"a": "x"})
        assert invalid.value.errors[0]["field"] == "a"
        with pytest.raises(JobNotFound, match=MISSING):
            client.get(MISSING)
        with pytest.raises(JobNotFound):
            list(client.events(MISSING))
        queued = client.enqueue("add", {"a": 1}, delay="1h")
        with pytest.raises(IllegalTransition):
            client.retry(queued.id)
        with pytest.raises(InvalidPayload) as in_batch:
            client.enqueue_many([JobRequest("add", {"a": 1}), JobRequest("add", {"b": 1})])
        assert in_batch.value.details["index"] == 1
        assert [v.id for v in client.list(type="add").items] == [queued.id]  # no batch job

    for token in ("wrong", None):
        with Client(url, token=token) as stranger, pytest.raises(Unauthorized):
            stranger.get(queued.id)
    with Client(url, token="look") as reader:
        assert reader.get(queued.id).state is State.SCHEDULED
        with pytest.raises(Forbidden):
            reader.cancel(queued.id)

    nowhere = f"http://127.0.0.1:{_free_port()}"
    with Client(nowhere) as lost, pytest.raises(ServerUnreachable, match=nowhere):
        lost.enqueue("add", {"a": 1})
    unknown_code = error_for("brand_new_code", "something new", {"x": 1})
    assert type(unknown_code) is ConveyorError and unknown_code.code == "brand_new_code"
    assert unknown_code.message == "something new" and unknown_code.details == {"x": 1}


def test_the_async_client_does_the_same(sqlite_backend: Backend) -> None:
    url = _serve(sqlite_backend)
    sqlite_backend.worker()

    async def scenario() -> None:
        async with AsyncClient(url) as client:
            accepted = await client.enqueue("add", {"a": 40, "b": 2})
            assert (await client.wait(accepted.id, timeout=30)).result == 42
            staged = await client.enqueue("staged", {"pause": 0.1})
            states = [e["state"] async for e in client.events(staged.id)]
            assert in_order(states, LIFECYCLE) and states[-1] == "completed", states
            pages = [p async for p in client.pages(type="add", limit=1)]
            assert [v.id for p in pages for v in p.items] == [accepted.id]
            later = await client.enqueue("add", {"a": 1}, delay="1h")
            assert (await client.cancel(later.id)).state is State.CANCELED
            assert (await client.retry(later.id)).state is State.QUEUED
            assert (await client.bulk("delete", type="staged")).changed == 1
            with pytest.raises(JobNotFound):
                await client.get(staged.id)
            with pytest.raises(UnknownJobType):
                await client.enqueue("nope")
        nowhere = f"http://127.0.0.1:{_free_port()}"
        async with AsyncClient(nowhere) as lost:
            with pytest.raises(ServerUnreachable, match=nowhere):
                await lost.get(MISSING)

    asyncio.run(scenario())
