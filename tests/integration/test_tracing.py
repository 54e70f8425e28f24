"""OpenTelemetry: an HTTP enqueue's span, and the spans of its attempts in a real worker,
joined in one trace through the trace context the job row carries (``core.tracing``).

The worker runs in this process (``build_worker`` on a thread of its own) so the SDK's
in-memory exporter sees every span; the API runs in process too (a TestClient), given a
caller's trace context in its ``traceparent`` header."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from conveyor import Conveyor, State
from conveyor.api import create_app
from conveyor.worker.process import build_worker
from tests.conftest import Backend


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """A configured SDK tracer provider for this test only (the API sets its global provider
    once per process: it is swapped in and out here, as OpenTelemetry's own tests do)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


def traced_api(conveyor: Conveyor) -> TestClient:
    """The API in process. FastAPI makes each request's SERVER span itself once a provider
    is configured (its built-in telemetry, or opentelemetry-instrumentation-fastapi): the
    enqueue span must be its child."""
    return TestClient(create_app(conveyor), raise_server_exceptions=False)


def run_worker(app: Conveyor, until: Callable[[], Any]) -> Any:
    """A real worker, in this process, until ``until()`` returns."""
    worker = build_worker(app, queues={"default": 1}, concurrency=4)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),))
    thread.start()
    try:
        return until()
    finally:
        loop.call_soon_threadsafe(worker.request_stop)
        thread.join(30)
        loop.close()


def ancestors(span: dict[str, Any], found: list[dict[str, Any]]) -> list[str]:
    """The ids of ``span``'s parent, its parent's, ... among the ``found`` spans."""
    by_id = {s["span_id"]: s for s in found}
    chain, parent = [], span["parent"]
    while parent in by_id:
        chain.append(parent)
        parent = by_id[parent]["parent"]
    return chain


def carried(meta: dict[str, Any] | None) -> tuple[str, str]:
    """The trace and span ids of the W3C context a job's ``meta`` carries (nothing else)."""
    assert meta is not None and set(meta) <= {"traceparent", "tracestate"}, meta
    version, trace_id, span_id, _flags = meta["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id


def describe(span: ReadableSpan) -> dict[str, Any]:
    """A span as the exporter saw it, ids in hex (what the issue's note shows)."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent": f"{span.parent.span_id:016x}" if span.parent else None,
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_an_http_enqueue_and_its_attempts_share_one_trace(
    backend: Backend, spans: InMemorySpanExporter
) -> None:
    app = backend.app()
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}  # an upstream service
    with traced_api(app) as api:
        body = {"type": "flaky", "payload": {"fail_times": 1}}
        response = api.post("/jobs", json=body, headers=caller)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    view = run_worker(app, lambda: app.client.wait(job_id, timeout=30))
    assert view.state is State.COMPLETED and view.result == 2

    found = [describe(s) for s in spans.get_finished_spans()]
    print(*found, sep="\n")  # the note's sample: pytest -s
    (request,) = [s for s in found if s["kind"] == "SERVER"]
    (send,) = [s for s in found if s["kind"] == "PRODUCER"]
    attempts = sorted(
        (s for s in found if s["kind"] == "CONSUMER"),
        key=lambda s: s["attributes"]["conveyor.job.attempt"],
    )
    assert request["name"] == "POST /jobs" and request["parent"] == CALLER_SPAN
    assert request["trace_id"] == send["trace_id"] == CALLER_TRACE
    # a child of whatever span is current in the route (FastAPI's endpoint span, under the
    # request's)
    assert send["name"] == "send default" and request["span_id"] in ancestors(send, found)
    assert send["attributes"] == {
        "messaging.system": "conveyor",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": job_id,
        "conveyor.job.id": job_id,
        "messaging.destination.name": "default",
        "conveyor.job.type": "flaky",
    }
    assert [a["name"] for a in attempts] == ["process default", "process default"]
    for attempt in attempts:  # the attempt joins the request's trace, a child of the send
        assert attempt["trace_id"] == request["trace_id"]
        assert attempt["parent"] == send["span_id"] and attempt["links"] == [send["span_id"]]
        assert attempt["attributes"]["messaging.message.id"] == job_id
        assert attempt["attributes"]["conveyor.job.type"] == "flaky"
        assert attempt["attributes"]["messaging.destination.name"] == "default"
        assert attempt["attributes"]["messaging.operation.type"] == "process"
    first, second = (a["attributes"] for a in attempts)
    assert (first["conveyor.job.attempt"], first["conveyor.job.outcome"]) == (1, "error")
    assert (first["conveyor.job.state"], first["error.type"]) == ("retrying", "Flaky")
    assert attempts[0]["status"] == "ERROR"
    assert (second["conveyor.job.attempt"], second["conveyor.job.outcome"]) == (2, "completed")
    assert second["conveyor.job.state"] == "completed" and "error.type" not in second
    assert attempts[1]["status"] == "UNSET"


def test_a_batch_is_one_span_and_every_job_carries_it(
    sqlite_backend: Backend, spans: InMemorySpanExporter
) -> None:
    app = sqlite_backend.app()
    jobs = [{"type": "add", "payload": {"a": i}} for i in range(3)]
    with traced_api(app) as api:
        response = api.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    ids = [j["id"] for j in response.json()["jobs"]]
    (send,) = [describe(s) for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert send["attributes"]["conveyor.job.ids"] == tuple(ids)
    assert send["attributes"]["messaging.batch.message_count"] == 3
    for job_id in ids:
        assert carried(app.get(job_id).meta) == (send["trace_id"], send["span_id"])


def test_an_idempotent_http_enqueue_is_traced_by_the_client(
    sqlite_backend: Backend, spans: InMemorySpanExporter
) -> None:
    """With a key, POST /jobs enqueues alone, through ``Client.enqueue_many`` in a pool
    thread: its span is still the request's child."""
    app = sqlite_backend.app()
    with traced_api(app) as api:
        body = {"type": "add", "payload": {"a": 1}}
        response = api.post("/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 202, response.text
    found = [describe(s) for s in spans.get_finished_spans()]
    (request,) = [s for s in found if s["kind"] == "SERVER"]
    (send,) = [s for s in found if s["kind"] == "PRODUCER"]
    assert request["span_id"] in ancestors(send, found)
    assert carried(app.get(response.json()["id"]).meta) == (send["trace_id"], send["span_id"])


def test_a_python_enqueue_makes_its_own_span(
    sqlite_backend: Backend, spans: InMemorySpanExporter
) -> None:
    app = sqlite_backend.app()
    handle = app.enqueue("add", {"a": 1})
    (send,) = [describe(s) for s in spans.get_finished_spans()]
    assert (send["name"], send["kind"], send["parent"]) == ("send default", "PRODUCER", None)
    assert carried(app.get(handle.id).meta) == (send["trace_id"], send["span_id"])


def test_without_a_tracer_provider_nothing_is_written_to_meta(sqlite_backend: Backend) -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    app = sqlite_backend.app()
    with TestClient(create_app(app)) as api:
        one = api.post("/jobs", json={"type": "add", "payload": {"a": 1}}).json()["id"]
        many = api.post("/jobs/batch", json={"jobs": [{"type": "add", "payload": {"a": 1}}]})
    ids = [one, app.enqueue("add", {"a": 1}).id, many.json()["jobs"][0]["id"]]
    assert [app.get(i).meta for i in ids] == [None, None, None]
    view = run_worker(app, lambda: app.client.wait(ids[0], timeout=30))
    assert view.state is State.COMPLETED


def test_without_a_provider_a_current_remote_context_is_still_carried(
    sqlite_backend: Backend,
) -> None:
    """A context propagated from elsewhere (no SDK in this process) still reaches the
    worker, whose own spans may be recorded."""
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    app = sqlite_backend.app()
    with trace.use_span(NonRecordingSpan(remote)):
        handle = app.enqueue("add", {"a": 1})
    assert carried(app.get(handle.id).meta) == (f"{0xABC:032x}", f"{0xDEF:016x}")
