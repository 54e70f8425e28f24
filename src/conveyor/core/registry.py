"""Job types: a name, a handler, and a payload schema derived from the handler's signature."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic

from conveyor.core.durations import Duration, parse_duration, parse_timeout
from conveyor.core.errors import ConfigurationError, InvalidPayload, UnknownJobType
from conveyor.core.names import InvalidQueueName, check_queue_name
from conveyor.core.payloads import mask_secrets, masked_view
from conveyor.core.retry import RetryPolicy
from conveyor.core.storable import problems
from conveyor.core.views import JobView
from conveyor.core.webhooks import InvalidWebhook, check_webhook_url

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class JobType:
    """A registered job type: everything a worker needs to run it and a client to enqueue it."""

    name: str
    handler: Handler
    queue: str
    policy: RetryPolicy
    timeout_s: float | None
    stages: tuple[str, ...]
    payload_model: type[pydantic.BaseModel]
    takes_context: bool
    secret_fields: frozenset[str] = frozenset()  # masked in every response and log line
    isolated: bool = False  # each attempt in a child process that can be killed
    webhook: str | None = None  # told when a job of this type ends (core.webhooks)
    is_async: bool = field(init=False)
    # (argument name, model attribute) per payload field, read once: pydantic's
    # ``model_fields`` is a property that costs on every access.
    _arguments: tuple[tuple[str, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.handler))
        fields = self.payload_model.model_fields.items()
        names = tuple((info.alias or name, name) for name, info in fields)
        object.__setattr__(self, "_arguments", names)

    def validate(self, payload: Mapping[str, Any] | None) -> dict[str, Any]:
        """The payload normalised to JSON types; raises InvalidPayload naming each bad field."""
        model = self.parse(payload)
        try:
            return model.model_dump(mode="json", by_alias=True)
        except ValueError:  # nested deeper than pydantic goes (255 levels), a surrogate key
            found = [p for p in problems(dict(payload or {})) if p["type"] != "not_json"]
            if not found:
                raise
            raise InvalidPayload(self.name, found) from None

    def parse(self, payload: Mapping[str, Any] | None) -> pydantic.BaseModel:
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise InvalidPayload(
                self.name,
                [{"field": "", "message": "the payload must be a JSON object", "type": "type"}],
            )
        try:
            return self.payload_model.model_validate(dict(payload))
        except pydantic.ValidationError as exc:
            raise InvalidPayload(self.name, payload_errors(exc)) from None

    def arguments(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for the handler, typed by its annotations."""
        model = self.parse(payload)
        return {argument: getattr(model, name) for argument, name in self._arguments}

    def json_schema(self) -> dict[str, Any]:
        return self.payload_model.model_json_schema()


def payload_errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False)
    ]


def payload_model_for(name: str, handler: Handler) -> tuple[type[pydantic.BaseModel], bool]:
    """A pydantic model of the handler's parameters (the leading ``ctx`` excluded)."""
    signature = inspect.signature(handler)
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:  # unresolvable forward references
        raise ConfigurationError(f"job {name!r}: cannot resolve annotations: {exc}") from exc
    params = list(signature.parameters.values())
    takes_context = bool(params) and _is_context(params[0], hints)
    if takes_context:
        params = params[1:]
    fields: dict[str, Any] = {}
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"job {name!r}: parameter {param.name!r} must be a plain or keyword-only "
                "parameter; payloads are passed by name"
            )
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        if _shadows_model_attribute(param.name):
            # e.g. ``schema``: keep the payload key, store the field under a safe name
            info = pydantic.Field(default, alias=param.name)
            safe = f"field_{param.name}"
            while safe in signature.parameters or safe in fields:
                safe += "_"
            fields[safe] = (annotation, info)
        else:
            fields[param.name] = (annotation, default)
    model_name = "".join(part.title() for part in name.replace(".", "_").split("_")) + "Payload"
    # NaN and Infinity are not JSON: refused in typed fields, and kept (not turned into null)
    # in untyped ones so that the storability check names them.
    config = pydantic.ConfigDict(
        extra="forbid", populate_by_name=False, allow_inf_nan=False, ser_json_inf_nan="constants"
    )
    try:
        model = pydantic.create_model(model_name, __config__=config, **fields)
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise ConfigurationError(
            f"job {name!r}: its parameters cannot form a JSON payload schema: {exc}"
        ) from None
    return model, takes_context


def _shadows_model_attribute(name: str) -> bool:
    return name.startswith(("model_", "_")) or hasattr(pydantic.BaseModel, name)


def _is_context(param: inspect.Parameter, hints: Mapping[str, Any]) -> bool:
    annotation = hints.get(param.name)
    if annotation is not None and getattr(annotation, "__name__", "") == "Context":
        return True
    return param.name in ("ctx", "context") and annotation is None


class Registry:
    """Job types by name."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def add(self, job_type: JobType) -> None:
        if job_type.name in self._types:
            raise ConfigurationError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type

    def remove(self, name: str) -> None:
        self._types.pop(name, None)

    def policy(self, name: str, max_attempts: int) -> RetryPolicy:
        """The retry policy of a job: its type's, with the job's own attempt budget (an
        unknown type gets the defaults)."""
        base = self._types[name].policy if name in self._types else RetryPolicy()
        return (
            base if base.max_attempts == max_attempts else replace(base, max_attempts=max_attempts)
        )

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name, list(self._types)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def secret_fields(self, name: str) -> frozenset[str]:
        """The fields a job type declared secret (none for an unknown type)."""
        job_type = self._types.get(name)
        return job_type.secret_fields if job_type is not None else frozenset()

    def masked_payload(self, name: str, payload: Any) -> Any:
        """A payload (a schedule's, say) with its job type's secret fields masked."""
        return mask_secrets(payload, self.secret_fields(name))

    def shown(self, view: JobView) -> JobView:
        """The job as it may be shown anywhere (API, CLI, dashboard): its secrets masked by
        name and by value."""
        return masked_view(view, self.secret_fields(view.type))

    def __iter__(self) -> Iterator[JobType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return sorted(self._types)


def job_type_for(
    fn: Callable[..., Any],
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
) -> JobType:
    """The job type ``@app.job`` registers for ``fn``, its options checked (a bad one is a
    ConfigurationError naming the job)."""
    job_name = name or fn.__name__
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        raise ConfigurationError(f"job {job_name!r}: retries must be a whole number >= 0")
    try:
        check_queue_name(queue)
    except InvalidQueueName as exc:
        raise ConfigurationError(f"job {job_name!r}: {exc.message}") from None
    # Defaults that depend on settings are read now only if given; otherwise the
    # documented defaults apply (settings may not be loadable at import time).
    policy = RetryPolicy(
        max_attempts=(3 if retries is None else retries) + 1,
        base_s=1.0 if backoff_base is None else parse_duration(backoff_base, name="backoff_base"),
        cap_s=300.0 if backoff_cap is None else parse_duration(backoff_cap, name="backoff_cap"),
        retry_on=tuple(retry_on),
        dont_retry_on=tuple(dont_retry_on),
    )
    if webhook is not None:
        try:
            check_webhook_url(webhook)
        except InvalidWebhook as exc:
            raise ConfigurationError(f"job {job_name!r}: {exc.message}") from None
    model, takes_context = payload_model_for(job_name, fn)
    timeout_s = parse_timeout(timeout) if timeout is not None else None
    return JobType(
        name=job_name,
        handler=fn,
        queue=queue,
        policy=policy,
        timeout_s=timeout_s,
        stages=tuple(stages),
        payload_model=model,
        takes_context=takes_context,
        secret_fields=frozenset(secret_fields),
        isolated=bool(isolated),
        webhook=webhook,
    )
