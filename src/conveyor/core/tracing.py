"""OpenTelemetry spans for enqueues and attempts: optional, and cheap when unused.

The ``opentelemetry-api`` package is imported only here (the ``otel`` extra; FastAPI
brings it too), and only once the process uses it: once something else imported it (the
application that sets a tracer provider, its instrumentation, FastAPI) or a provider is named
in ``OTEL_PYTHON_TRACER_PROVIDER``. Before that no provider can be configured and no span be
current, so every hook is a no-op, and a worker's start does not pay the API's import. With
the API in use but no tracer provider configured (its default proxy), a hook costs a check of
the global provider and of the current span, and no span is made.

The spans follow OpenTelemetry's messaging conventions:

- an enqueue is one PRODUCER span ``send <queue>``, a child of whatever span is current (an
  HTTP request's, say). A batch is one span, its job ids an attribute: one enqueue is one
  transaction, and a span per job of a 1,000-job batch would cost more than its insert.
- its W3C context (``traceparent``, ``tracestate``) is stored in the job row's ``meta``, only
  when there is a valid span to carry;
- each attempt is one CONSUMER span ``process <queue>`` whose parent is that context (an
  attempt has no ambient context of its own, and the conventions let a consumer span of one
  message take the creation context as parent), so every attempt joins the trace of the
  request that enqueued it; it also links to it, as the conventions ask of every consumer
  span. The span is current while the handler runs: the handler's own spans are its children.

No I/O of its own: spans go to whatever processor and exporter the application configured.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

#: The module whose presence says OpenTelemetry is in use in this process (see ``in_use``).
_API = "opentelemetry.trace"
#: A provider named by the environment, which the API loads when first asked for one.
_FROM_ENV = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
if _FROM_ENV:
    with contextlib.suppress(ImportError):  # the otel extra is not installed: all no-ops
        import opentelemetry.trace  # noqa: F401

#: The keys of the W3C trace context in a job's ``meta``.
TRACE_KEYS = ("traceparent", "tracestate")
#: Most job ids an enqueue span lists (a batch of more says how many in ``message_count``).
MAX_SPAN_IDS = 1000

SYSTEM = "conveyor"
# Attribute names: OpenTelemetry's messaging conventions where they have one, else ours.
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGING_SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
JOB_ID = "conveyor.job.id"
JOB_IDS = "conveyor.job.ids"
JOB_TYPE = "conveyor.job.type"
ATTEMPT = "conveyor.job.attempt"
OUTCOME = "conveyor.job.outcome"
STATE = "conveyor.job.state"
WORKER_ID = "conveyor.worker.id"
#: Outcomes whose span status is ERROR: the handler failed (not a cancel or a hand-back).
FAILED_OUTCOMES = frozenset({"error", "timeout", "crashed"})


class NewJobLike(Protocol):
    """What an enqueue span reads of a job about to be inserted (``store.NewJob``)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def queue(self) -> str: ...


class ClaimedLike(Protocol):
    """What an attempt span reads of a claimed job (``store.ClaimedJob``)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def meta(self) -> dict[str, Any] | None: ...


#: The last provider seen and its tracer (not the API's proxy tracer, which keeps the first
#: provider's tracer for good).
_cached: tuple[Any, Any] = (None, None)


def in_use() -> bool:
    """Whether this process uses OpenTelemetry: its API has been imported (by anyone)."""
    return _API in sys.modules


def recording() -> bool:
    """Whether spans are made: the API is in use and the application set a provider.

    Asked once per attempt: when no provider was ever set (the API's global is still None)
    it answers without ``get_tracer_provider``, which reads the environment at every call."""
    if not in_use():
        return False
    trace: Any = sys.modules[_API]
    if getattr(trace, "_TRACER_PROVIDER", True) is None and not _FROM_ENV:
        return False
    unconfigured = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    return not isinstance(trace.get_tracer_provider(), unconfigured)


@functools.cache
def _w3c() -> TraceContextTextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _tracer() -> Any:
    """The tracer of the configured provider (call only when ``recording()``)."""
    from opentelemetry import trace

    global _cached
    provider = trace.get_tracer_provider()
    if _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("conveyor"))
    return _cached[1]


# -- enqueue -----------------------------------------------------------------------------------


class Enqueue:
    """An enqueue span (or none): what to store in the jobs' ``meta``, and a way to name
    the jobs once known (the API's group commit learns them after the span starts)."""

    __slots__ = ("carrier", "span")

    def __init__(self, carrier: dict[str, str] | None, span: Any = None) -> None:
        self.carrier = carrier
        self.span = span

    def describe(self, jobs: Sequence[NewJobLike]) -> None:
        """Name the span after the jobs' queue; their ids, type and count as attributes."""
        if self.span is not None and jobs:
            ids = [j.id for j in jobs[:MAX_SPAN_IDS]]
            self._name(ids, len(jobs), {j.type for j in jobs}, {j.queue for j in jobs})

    def one(self, job_id: str, job_type: str, queue: str) -> None:
        """``describe`` for one job known by its parts."""
        if self.span is not None:
            self._name([job_id], 1, {job_type}, {queue})

    def _name(self, ids: list[str], count: int, types: set[str], queues: set[str]) -> None:
        queue = queues.pop() if len(queues) == 1 else None
        self.span.update_name(f"send {queue}" if queue else "send")
        attributes: dict[str, Any] = {}
        if count == 1:
            attributes[MESSAGE_ID] = attributes[JOB_ID] = ids[0]
        else:
            attributes[BATCH_COUNT] = count
            attributes[JOB_IDS] = ids
        if queue is not None:
            attributes[DESTINATION] = queue
        if len(types) == 1:
            attributes[JOB_TYPE] = types.pop()
        self.span.set_attributes(attributes)


_NOTHING = Enqueue(None)
_NO_SPAN = nullcontext(_NOTHING)  # reusable: entering it does nothing


def enqueue_span(jobs: Sequence[NewJobLike] = ()) -> AbstractContextManager[Enqueue]:
    """The PRODUCER span of one enqueue (one transaction), current inside the block.

    Without a configured provider no span is made, but a current valid span (a context
    propagated from elsewhere) is still carried to the jobs.
    """
    if not in_use():
        return _NO_SPAN
    if not recording():
        from opentelemetry import trace

        carrier = _carrier(trace.get_current_span())
        return _NO_SPAN if carrier is None else nullcontext(Enqueue(carrier))
    return _sending(jobs)


@contextmanager
def _sending(jobs: Sequence[NewJobLike]) -> Iterator[Enqueue]:
    from opentelemetry import trace

    attributes = {MESSAGING_SYSTEM: SYSTEM, OPERATION_TYPE: "send", OPERATION_NAME: "send"}
    with _tracer().start_as_current_span(
        "send", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        sent = Enqueue(_carrier(span), span)
        sent.describe(jobs)
        yield sent


def with_trace(meta: Mapping[str, Any] | None, carrier: Mapping[str, str]) -> dict[str, Any]:
    """A job's ``meta`` carrying ``carrier`` (the enqueue's context replaces any other)."""
    kept = {k: v for k, v in (meta or {}).items() if k not in TRACE_KEYS}
    return kept | dict(carrier)


def _carrier(span: Any) -> dict[str, str] | None:
    """The W3C trace context of ``span``; None when it has no valid context to carry."""
    from opentelemetry import trace

    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _w3c().inject(carrier, context=trace.set_span_in_context(span))
    return carrier


# -- attempt -----------------------------------------------------------------------------------


class Attempt:
    """One attempt's span, current in the attempt's task until ``attempt_ended``."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token


def attempt_started(job: ClaimedLike, worker_id: str) -> Attempt | None:
    """Start the CONSUMER span of one attempt and make it current in this task (the
    worker's task per attempt, whose context a thread handler's copy inherits); None when
    no provider is configured."""
    if not recording():
        return None
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    created = _created(job.meta)
    created_span = trace.get_current_span(created) if created is not None else None
    links = (
        [trace.Link(created_span.get_span_context())]
        if created_span is not None and created_span.get_span_context().is_valid
        else None
    )
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: SYSTEM,
        OPERATION_TYPE: "process",
        OPERATION_NAME: "process",
        DESTINATION: job.queue,
        MESSAGE_ID: job.id,
        JOB_ID: job.id,
        JOB_TYPE: job.type,
        ATTEMPT: job.attempt,
        WORKER_ID: worker_id,
    }
    span = _tracer().start_span(
        f"process {job.queue}",
        context=created if links else otel_context.Context(),  # a root without a creator
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    )
    return Attempt(span, otel_context.attach(trace.set_span_in_context(span)))


def attempt_ended(
    started: Attempt | None, outcome: str, error_type: str | None, state: str | None
) -> None:
    """End an attempt's span with how it ended and the state it left the job in."""
    if started is None:
        return
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    span = started.span
    attributes: dict[str, Any] = {OUTCOME: outcome}
    if state is not None:
        attributes[STATE] = state
    if error_type is not None:
        attributes[ERROR_TYPE] = error_type
    span.set_attributes(attributes)
    if outcome in FAILED_OUTCOMES:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
    span.end()
    otel_context.detach(started.token)


def _created(meta: Mapping[str, Any] | None) -> Any:
    """The enqueue's context carried in ``meta``, or None."""
    if not meta or "traceparent" not in meta:
        return None
    from opentelemetry import context as otel_context

    carrier = {k: str(meta[k]) for k in TRACE_KEYS if k in meta}
    return _w3c().extract(carrier, context=otel_context.Context())
