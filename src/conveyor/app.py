"""The Conveyor application: the job-type registry and schedules, plus a lazily connected
client for enqueueing and inspecting jobs."""

from __future__ import annotations

import asyncio
import builtins
import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, ParamSpec, TypeVar, overload

from conveyor.client import Client, EnqueueOptions, EnqueueRequest
from conveyor.core.durations import Duration
from conveyor.core.errors import ConfigurationError, JobNotFound
from conveyor.core.periodic import ScheduleDef, define
from conveyor.core.registry import JobType, Registry, job_type_for
from conveyor.core.settings import Settings, load_settings
from conveyor.core.views import JobView, Page
from conveyor.core.webhooks import META_DELIVERIES, WEBHOOK_TYPE
from conveyor.services import Services
from conveyor.webhooks import delivery_type

P = ParamSpec("P")
R = TypeVar("R")


class Conveyor:
    """Register job types with ``@app.job``; enqueue, inspect and control jobs.

    Nothing connects until first use, so importing a module that builds an app is free.
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.registry = Registry()
        self.schedules: dict[str, ScheduleDef] = {}
        self._settings = settings
        self._overrides = overrides
        self._services: Services | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._install_webhooks(settings)

    # -- configuration ----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(**self._overrides)
            self._install_webhooks(self._settings)
        return self._settings

    def _install_webhooks(self, settings: Settings | None) -> None:
        """Register the built-in ``conveyor.webhook`` job type; its retry span and timeout
        come from settings, so it is registered again once they are loaded."""
        conf = settings if settings is not None else Settings.model_construct()
        backoff_s, timeout_s = conf.webhook_backoff_seconds, conf.webhook_timeout_seconds
        self.registry.remove(WEBHOOK_TYPE)
        self.registry.add(delivery_type(self._shown, lambda: self.settings, backoff_s, timeout_s))

    def _shown(self, job_id: str) -> JobView:
        return self.registry.shown(self.client.get(job_id))

    @property
    def services(self) -> Services:
        """This process's connections and stores (``conveyor.services``), made on first use."""
        if self._services is None:
            with self._lock:
                if self._services is None:
                    self._services = Services.build(self.settings)
        return self._services

    @property
    def client(self) -> Client:
        if self._client is None:
            s = self.services
            with self._lock:
                if self._client is None:
                    self._client = Client(
                        self.registry, s.settings, s.jobs, s.clock, s.handoff, s.events
                    )
        return self._client

    def close(self) -> None:
        services, self._services, self._client = self._services, None, None
        if services is not None:
            services.close()

    # -- job types --------------------------------------------------------------------------

    @overload
    def job(self, fn: Callable[P, R], /) -> JobFunction[P, R]: ...

    @overload
    def job(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int | None = None,
        timeout: Duration | None = None,
        stages: Sequence[str] = (),
        retry_on: Iterable[type[BaseException]] = (),
        dont_retry_on: Iterable[type[BaseException]] = (),
        backoff_base: Duration | None = None,
        backoff_cap: Duration | None = None,
        secret_fields: Iterable[str] = (),
        isolated: bool = False,
        webhook: str | None = None,
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...

    def job(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:  # type: ignore[misc]
        """Register a handler as a job type (usable bare or with options)."""
        if fn is not None:
            return self._register(fn, **options)
        return lambda handler: self._register(handler, **options)

    def _register(self, fn: Callable[..., Any], **options: Any) -> JobFunction[Any, Any]:
        job_type = job_type_for(fn, **options)
        self.registry.add(job_type)
        return JobFunction(self, job_type)

    # -- schedules --------------------------------------------------------------------------

    def schedule(
        self,
        name: str,
        job_type: str,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        tz: str = "UTC",
        payload: Mapping[str, Any] | None = None,
        queue: str | None = None,
        overlap: str = "allow",
        catch_up: str = "latest",
    ) -> ScheduleDef:
        """Run ``job_type`` on a cron spec or at a fixed interval, from any scheduler.

        Checked now: a bad cron string, time zone, job type or payload raises at once.
        """
        if name in self.schedules:
            raise ConfigurationError(f"schedule {name!r} is defined twice")
        definition = define(
            self.registry, name, job_type, cron=cron, every=every, tz=tz, payload=payload,
            queue=queue, overlap=overlap, catch_up=catch_up,
        )  # fmt: skip
        self.schedules[name] = definition
        return definition

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        tz: str = "UTC",
        payload: Mapping[str, Any] | None = None,
        queue: str | None = None,
        overlap: str = "allow",
        catch_up: str = "latest",
        name: str | None = None,
        **job_options: Any,
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]:
        """Register the handler as a job type and schedule it under the same name."""

        def decorate(fn: Callable[P, R]) -> JobFunction[P, R]:
            job: JobFunction[P, R] = self.job(name=name, queue=queue or "default", **job_options)(
                fn
            )
            try:
                self.schedule(
                    job.name, job.name, cron=cron, every=every, tz=tz, payload=payload,
                    queue=queue, overlap=overlap, catch_up=catch_up,
                )  # fmt: skip
            except Exception:
                self.registry.remove(job.name)  # nothing half-defined
                raise
            return job

        return decorate

    # -- client -----------------------------------------------------------------------------

    def enqueue(
        self, type: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> JobHandle:
        """Enqueue a job by type name; ``options`` are those of EnqueueOptions."""
        request = EnqueueRequest(type, payload, EnqueueOptions(**options))
        (inserted,) = self.client.enqueue_many([request])
        return JobHandle(self, inserted.id)

    def enqueue_many(
        self, requests: Sequence[EnqueueRequest], *, connection: Any = None
    ) -> list[JobHandle]:
        """Enqueue many jobs in one transaction and one dispatch round trip."""
        results = self.client.enqueue_many(requests, connection=connection)
        return [JobHandle(self, inserted.id) for inserted in results]

    def get(self, job_id: str) -> JobView:
        return self.client.get(job_id)

    def list(self, **filters: Any) -> Page:
        """Jobs newest first; filters: state, type, queue, created_after, created_before,
        cursor, limit."""
        return self.client.list(**filters)

    def cancel(self, job_id: str) -> JobView:
        return self.client.cancel(job_id)

    def webhook_deliveries(self, job_id: str) -> builtins.list[JobView]:
        """A job's webhook delivery log: its delivery jobs, oldest first, each with its
        attempts (errors included). Deliveries deleted by retention are left out."""
        meta = self.client.jobs.get(job_id, with_attempts=False).meta or {}
        views = []
        for delivery_id in meta.get(META_DELIVERIES) or []:
            try:
                views.append(self.client.get(delivery_id))
            except JobNotFound:
                continue
        return views

    def retry(self, job_id: str) -> JobView:
        return self.client.retry(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobView:
        return self.client.wait(job_id, timeout)

    async def aenqueue(
        self, type: str, payload: Mapping[str, Any] | None = None, **options: Any
    ) -> JobHandle:
        return await asyncio.to_thread(self.enqueue, type, payload, **options)

    async def aenqueue_many(
        self, requests: Sequence[EnqueueRequest], *, connection: Any = None
    ) -> builtins.list[JobHandle]:
        return await asyncio.to_thread(self.enqueue_many, requests, connection=connection)

    async def aget(self, job_id: str) -> JobView:
        return await asyncio.to_thread(self.get, job_id)

    async def alist(self, **filters: Any) -> Page:
        return await asyncio.to_thread(functools.partial(self.list, **filters))

    async def acancel(self, job_id: str) -> JobView:
        return await asyncio.to_thread(self.cancel, job_id)

    async def aretry(self, job_id: str) -> JobView:
        return await asyncio.to_thread(self.retry, job_id)

    async def await_job(self, job_id: str, timeout: float | None = None) -> JobView:
        """Async twin of wait(): polls without blocking the event loop."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.05
        while True:
            view = await asyncio.to_thread(self.client.jobs.get, job_id, with_attempts=False)
            if view.terminal:
                return await self.aget(job_id)
            if deadline is not None and loop.time() >= deadline:
                return await asyncio.to_thread(self.wait, job_id, 0)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)


class JobHandle:
    """A reference to an enqueued job."""

    __slots__ = ("app", "id")

    def __init__(self, app: Conveyor, job_id: str) -> None:
        self.app = app
        self.id = job_id

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def get(self) -> JobView:
        return self.app.get(self.id)

    def wait(self, timeout: float | None = None) -> JobView:
        """Block until the job is terminal and return it; WaitTimeout after ``timeout`` s."""
        return self.app.wait(self.id, timeout)

    def cancel(self) -> JobView:
        return self.app.cancel(self.id)

    async def aget(self) -> JobView:
        return await self.app.aget(self.id)

    async def async_wait(self, timeout: float | None = None) -> JobView:
        return await self.app.await_job(self.id, timeout)


class JobFunction(Generic[P, R]):
    """What ``@app.job`` returns: the handler, still callable, plus enqueue methods."""

    def __init__(
        self, app: Conveyor, job_type: JobType, options: EnqueueOptions | None = None
    ) -> None:
        self.app = app
        self.job_type = job_type
        self.name = job_type.name
        self._options = options or EnqueueOptions()
        functools.update_wrapper(self, job_type.handler)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.job_type.handler(*args, **kwargs)
        return result

    def options(self, **options: Any) -> JobFunction[P, R]:
        """A copy that enqueues with these options (queue, delay, run_at, retries,
        max_attempts, timeout, idempotency_key, webhook, connection)."""
        return JobFunction(self.app, self.job_type, replace(self._options, **options))

    def request(self, **payload: Any) -> EnqueueRequest:
        """An EnqueueRequest for enqueue_many()."""
        return EnqueueRequest(self.name, payload, self._options)

    def enqueue(self, **payload: Any) -> JobHandle:
        (inserted,) = self.app.client.enqueue_many([self.request(**payload)])
        return JobHandle(self.app, inserted.id)

    async def aenqueue(self, **payload: Any) -> JobHandle:
        return await asyncio.to_thread(functools.partial(self.enqueue, **payload))
