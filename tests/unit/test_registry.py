"""Job types built through Conveyor().job(...): payload schemas, validation, registration.

No ``from __future__ import annotations`` here: handlers are defined inside tests and their
annotations must be real objects for ``typing.get_type_hints``.
"""

import asyncio
import datetime
import inspect
from typing import Any, Literal

import pydantic
import pytest

from conveyor import Context, Conveyor, JobFunction
from conveyor.core.errors import (
    ConfigurationError,
    ConveyorError,
    InvalidPayload,
    UnknownJobType,
)
from conveyor.core.registry import JobType, Registry
from conveyor.core.retry import RetryPolicy


class Address(pydantic.BaseModel):
    street: str
    zip: int


@pytest.fixture
def app() -> Conveyor:
    return Conveyor()


def props(job: JobFunction[Any, Any]) -> dict[str, Any]:
    return job.job_type.json_schema()["properties"]


# -- the context parameter --------------------------------------------------------------------


def test_annotated_context_excluded(app: Conveyor) -> None:
    @app.job
    def send(c: Context, to: str, count: int = 1) -> None: ...

    assert send.job_type.takes_context is True
    assert set(props(send)) == {"to", "count"}
    assert send.job_type.validate({"to": "x"}) == {"to": "x", "count": 1}


def test_unannotated_ctx_excluded(app: Conveyor) -> None:
    @app.job
    def send(ctx, to: str) -> None: ...  # type: ignore[no-untyped-def]

    assert send.job_type.takes_context is True
    assert set(props(send)) == {"to"}
    with pytest.raises(InvalidPayload):
        send.job_type.validate({"to": "x", "ctx": 1})


def test_unannotated_context_name_excluded(app: Conveyor) -> None:
    @app.job
    def send(context, to: str) -> None: ...  # type: ignore[no-untyped-def]

    assert send.job_type.takes_context is True
    assert set(props(send)) == {"to"}


def test_no_context(app: Conveyor) -> None:
    @app.job
    def add(a: int, b: int) -> int:
        return a + b

    assert add.job_type.takes_context is False
    assert set(props(add)) == {"a", "b"}


def test_no_parameters(app: Conveyor) -> None:
    @app.job
    def tick() -> None: ...

    assert tick.job_type.takes_context is False
    assert tick.job_type.validate(None) == {}
    assert tick.job_type.validate({}) == {}
    assert tick.job_type.arguments({}) == {}


def test_ctx_with_other_annotation_is_a_payload_field(app: Conveyor) -> None:
    @app.job
    def odd(ctx: int) -> None: ...

    assert odd.job_type.takes_context is False
    assert set(props(odd)) == {"ctx"}


def test_unannotated_ctx_only_when_first(app: Conveyor) -> None:
    @app.job
    def later(x: int, ctx=None) -> None: ...  # type: ignore[no-untyped-def]

    assert later.job_type.takes_context is False
    assert set(props(later)) == {"x", "ctx"}


class Opaque:
    """A type pydantic cannot build a schema for."""


@pytest.mark.parametrize("kind", ["opaque", "late_ctx"])
def test_unsupported_annotation_is_configuration_error(app: Conveyor, kind: str) -> None:
    def opaque(a: int, thing: Opaque) -> None: ...

    def late_ctx(x: int, ctx: Context) -> None: ...

    with pytest.raises(ConfigurationError):
        app.job(opaque if kind == "opaque" else late_ctx)


# -- validation -------------------------------------------------------------------------------


def test_validation_names_each_bad_field(app: Conveyor) -> None:
    @app.job
    def job(ctx: Context, n: int, when: datetime.datetime, flag: bool = False) -> None: ...

    with pytest.raises(InvalidPayload) as info:
        job.job_type.validate({"n": "many", "when": "someday", "flag": "maybe"})
    err = info.value
    assert isinstance(err, ConveyorError)
    assert err.code == "invalid_payload"
    assert {e["field"] for e in err.errors} == {"n", "when", "flag"}
    for e in err.errors:
        assert set(e) == {"field", "message", "type"}
        assert e["message"]
        assert e["field"] in err.message
    assert "'job'" in err.message
    assert err.details["errors"] == err.errors


def test_missing_fields_named(app: Conveyor) -> None:
    @app.job
    def job(a: int, b: str) -> None: ...

    with pytest.raises(InvalidPayload) as info:
        job.job_type.validate({})
    assert [(e["field"], e["type"]) for e in info.value.errors] == [
        ("a", "missing"),
        ("b", "missing"),
    ]


def test_unknown_fields_rejected(app: Conveyor) -> None:
    @app.job
    def job(a: int) -> None: ...

    with pytest.raises(InvalidPayload) as info:
        job.job_type.validate({"a": 1, "surprise": True})
    assert [(e["field"], e["type"]) for e in info.value.errors] == [("surprise", "extra_forbidden")]


def test_nested_errors_use_dotted_paths(app: Conveyor) -> None:
    @app.job
    def ship(to: Address, items: list[int]) -> None: ...

    with pytest.raises(InvalidPayload) as info:
        ship.job_type.validate({"to": {"street": "Main", "zip": "x"}, "items": [1, "two"]})
    assert {e["field"] for e in info.value.errors} == {"to.zip", "items.1"}


@pytest.mark.parametrize("payload", [[1, 2], "text", 5])
def test_non_object_payload_rejected(app: Conveyor, payload: Any) -> None:
    @app.job
    def job(a: int = 0) -> None: ...

    with pytest.raises(InvalidPayload) as info:
        job.job_type.validate(payload)
    assert info.value.errors == [
        {"field": "", "message": "the payload must be a JSON object", "type": "type"}
    ]
    assert "(payload)" in info.value.message


def test_defaults_applied(app: Conveyor) -> None:
    @app.job
    def job(a: int, tags: list[str] = [], name: str = "n", limit: int | None = None) -> None: ...  # noqa: B006

    assert job.job_type.validate({"a": 1}) == {"a": 1, "tags": [], "name": "n", "limit": None}
    args = job.job_type.arguments({"a": 1})
    assert args == {"a": 1, "tags": [], "name": "n", "limit": None}
    with pytest.raises(InvalidPayload) as info:
        job.job_type.validate(None)  # None is an empty payload: only 'a' is missing
    assert [e["field"] for e in info.value.errors] == ["a"]


def test_coercion_follows_pydantic(app: Conveyor) -> None:
    @app.job
    def job(
        n: int,
        x: float,
        on: bool,
        when: datetime.datetime,
        to: Address,
        mode: Literal["fast", "slow"] = "fast",
    ) -> None: ...

    payload = {
        "n": "5",
        "x": 2,
        "on": "yes",
        "when": "2024-01-02T03:04:05Z",
        "to": {"street": "Main", "zip": "12345"},
        "mode": "slow",
    }
    assert job.job_type.validate(payload) == {
        "n": 5,
        "x": 2.0,
        "on": True,
        "when": "2024-01-02T03:04:05Z",
        "to": {"street": "Main", "zip": 12345},
        "mode": "slow",
    }
    args = job.job_type.arguments(payload)
    assert args["n"] == 5
    assert args["when"] == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    assert isinstance(args["to"], Address) and args["to"].zip == 12345
    with pytest.raises(InvalidPayload) as info:
        job.job_type.validate({**payload, "mode": "medium"})
    assert [e["field"] for e in info.value.errors] == ["mode"]


def test_unannotated_parameters_accept_anything(app: Conveyor) -> None:
    @app.job
    def job(anything, default=3) -> None: ...  # type: ignore[no-untyped-def]

    assert job.job_type.validate({"anything": {"x": [1]}}) == {"anything": {"x": [1]}, "default": 3}


def test_keyword_only_parameters_allowed(app: Conveyor) -> None:
    @app.job
    def job(ctx: Context, *, a: int, b: int = 2) -> None: ...

    assert job.job_type.arguments({"a": "1"}) == {"a": 1, "b": 2}


# -- names that shadow BaseModel attributes ---------------------------------------------------


def test_parameter_named_schema(app: Conveyor) -> None:
    @app.job
    def migrate(ctx: Context, schema: str, model_name: str = "m", copy: bool = False) -> str:
        return schema

    jt = migrate.job_type
    assert jt.validate({"schema": "public"}) == {
        "schema": "public",
        "model_name": "m",
        "copy": False,
    }
    assert jt.arguments({"schema": "public", "copy": True}) == {
        "schema": "public",
        "model_name": "m",
        "copy": True,
    }
    assert set(props(migrate)) == {"schema", "model_name", "copy"}
    assert jt.json_schema()["required"] == ["schema"]
    # the internal field name is not a payload key
    with pytest.raises(InvalidPayload) as info:
        jt.validate({"field_schema": "public"})
    assert {e["field"] for e in info.value.errors} == {"schema", "field_schema"}
    # errors name the payload key
    with pytest.raises(InvalidPayload) as info:
        jt.validate({"schema": 5})
    assert [e["field"] for e in info.value.errors] == ["schema"]
    assert migrate(None, **jt.arguments({"schema": "s"})) == "s"  # type: ignore[arg-type]


def test_schema_and_field_schema_parameters_coexist(app: Conveyor) -> None:
    @app.job
    def job(schema: str, field_schema: int) -> None: ...

    assert job.job_type.arguments({"schema": "s", "field_schema": 1}) == {
        "schema": "s",
        "field_schema": 1,
    }


# -- rejected signatures ----------------------------------------------------------------------


def test_var_positional_rejected(app: Conveyor) -> None:
    def job(ctx: Context, *args: int) -> None: ...

    with pytest.raises(ConfigurationError, match=r"'args'"):
        app.job(job)
    assert "job" not in app.registry


def test_var_keyword_rejected(app: Conveyor) -> None:
    def job(a: int, **kwargs: Any) -> None: ...

    with pytest.raises(ConfigurationError, match=r"'kwargs'"):
        app.job(job)
    assert app.registry.names() == ["conveyor.webhook"]  # only the built-in type


def test_positional_only_rejected(app: Conveyor) -> None:
    def job(a: int, /, b: int) -> None: ...

    with pytest.raises(ConfigurationError) as info:
        app.job(job)
    assert "'a'" in info.value.message
    assert "'job'" in info.value.message


def test_positional_only_ctx_is_fine(app: Conveyor) -> None:
    @app.job
    def job(ctx: Context, /, b: int) -> None: ...

    assert set(props(job)) == {"b"}


def test_unresolvable_annotation_rejected(app: Conveyor) -> None:
    def job(a: "NoSuchType") -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigurationError, match="cannot resolve annotations"):
        app.job(job)


def test_negative_retries_rejected(app: Conveyor) -> None:
    def job() -> None: ...

    with pytest.raises(ConfigurationError, match="retries"):
        app.job(retries=-1)(job)


# -- the registry -----------------------------------------------------------------------------


def test_registering_twice_raises(app: Conveyor) -> None:
    @app.job
    def job() -> None: ...

    def other() -> None: ...

    with pytest.raises(ConfigurationError, match="registered twice"):
        app.job(name="job")(other)
    with pytest.raises(ConfigurationError):
        app.job(job.job_type.handler)
    assert app.registry.get("job").handler is job.job_type.handler
    assert len(app.registry) == 2  # with the built-in conveyor.webhook


def test_same_name_in_separate_apps(app: Conveyor) -> None:
    def job() -> None: ...

    app.job(job)
    other = Conveyor()
    other.job(job)
    assert "job" in app.registry and "job" in other.registry


def test_get_unknown_lists_known_names(app: Conveyor) -> None:
    @app.job(name="zeta.task")
    def z() -> None: ...

    @app.job(name="alpha.task")
    def a() -> None: ...

    with pytest.raises(UnknownJobType) as info:
        app.registry.get("nope")
    err = info.value
    assert err.code == "unknown_job_type"
    assert "'nope'" in err.message
    assert "alpha.task, conveyor.webhook, zeta.task" in err.message  # with the built-in type
    assert err.details == {"type": "nope", "known": ["alpha.task", "conveyor.webhook", "zeta.task"]}


def test_get_unknown_in_empty_registry() -> None:
    with pytest.raises(UnknownJobType, match="known types: none"):
        Registry().get("x")


def test_registry_container_protocol(app: Conveyor) -> None:
    @app.job(name="b")
    def b() -> None: ...

    @app.job(name="a")
    def a() -> None: ...

    reg = app.registry
    assert len(reg) == 3  # with the built-in conveyor.webhook
    assert "a" in reg and "b" in reg and "c" not in reg
    assert reg.names() == ["a", "b", "conveyor.webhook"]
    assert {jt.name for jt in reg} == {"a", "b", "conveyor.webhook"}
    assert all(isinstance(jt, JobType) for jt in reg)


# -- job type properties ----------------------------------------------------------------------


def test_is_async(app: Conveyor) -> None:
    @app.job
    async def fetch(ctx: Context, url: str) -> str:
        return url

    @app.job
    def compute(x: int) -> int:
        return x

    assert fetch.job_type.is_async is True
    assert compute.job_type.is_async is False
    assert set(props(fetch)) == {"url"}
    assert asyncio.run(fetch(None, "u")) == "u"  # type: ignore[arg-type]


def test_is_async_cannot_be_passed() -> None:
    with pytest.raises(TypeError):
        JobType(  # type: ignore[call-arg]
            name="x",
            handler=lambda: None,
            queue="q",
            policy=RetryPolicy(),
            timeout_s=None,
            stages=(),
            payload_model=pydantic.BaseModel,
            takes_context=False,
            is_async=True,
        )


def test_json_schema(app: Conveyor) -> None:
    @app.job(name="emails.send_welcome")
    def send(ctx: Context, to: str, count: int = 1) -> None: ...

    schema = send.job_type.json_schema()
    assert schema["type"] == "object"
    assert schema["title"] == "EmailsSendWelcomePayload"
    assert schema["properties"]["to"]["type"] == "string"
    assert schema["properties"]["count"] == {"default": 1, "title": "Count", "type": "integer"}
    assert schema["required"] == ["to"]
    assert schema["additionalProperties"] is False


def test_options_stored_on_job_type(app: Conveyor) -> None:
    @app.job(
        name="custom",
        queue="critical",
        retries=2,
        timeout="5m",
        stages=["a", "b"],
        retry_on=[TimeoutError],
        dont_retry_on=[KeyError],
        backoff_base="2s",
        backoff_cap="1m",
    )
    def handler() -> None: ...

    jt = handler.job_type
    assert handler.name == jt.name == "custom"
    assert jt.queue == "critical"
    assert jt.timeout_s == 300.0
    assert jt.stages == ("a", "b")
    assert jt.policy == RetryPolicy(
        max_attempts=3,
        base_s=2.0,
        cap_s=60.0,
        retry_on=(TimeoutError,),
        dont_retry_on=(KeyError,),
    )


def test_default_job_options(app: Conveyor) -> None:
    @app.job
    def handler() -> None: ...

    jt = handler.job_type
    assert jt.name == "handler"
    assert jt.queue == "default"
    assert jt.timeout_s is None
    assert jt.stages == ()
    assert jt.policy == RetryPolicy(max_attempts=4, base_s=1.0, cap_s=300.0)


def test_retries_zero_means_one_attempt(app: Conveyor) -> None:
    @app.job(retries=0)
    def handler() -> None: ...

    assert handler.job_type.policy.max_attempts == 1


def test_zero_backoff_base_is_respected(app: Conveyor) -> None:
    @app.job(backoff_base=0)
    def handler() -> None: ...

    assert handler.job_type.policy.base_s == 0.0


def test_zero_backoff_as_string_is_respected(app: Conveyor) -> None:
    @app.job(backoff_base="0s")
    def handler() -> None: ...

    assert handler.job_type.policy.base_s == 0.0


# -- the JobFunction --------------------------------------------------------------------------


def test_decorated_function_still_callable(app: Conveyor) -> None:
    @app.job
    def add(a: int, b: int = 10) -> int:
        """Adds."""
        return a + b

    assert isinstance(add, JobFunction)
    assert add(1, 2) == 3
    assert add(a=5) == 15
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    assert list(inspect.signature(add).parameters) == ["a", "b"]


def test_decorated_with_options_still_callable(app: Conveyor) -> None:
    @app.job(queue="q")
    def greet(ctx: Context, name: str) -> str:
        return f"hi {name}"

    assert greet(None, name="bo") == "hi bo"  # type: ignore[arg-type]


def test_options_returns_copy_without_mutating(app: Conveyor) -> None:
    @app.job
    def job(a: int) -> None: ...

    later = job.options(delay="10m")
    assert isinstance(later, JobFunction)
    assert later is not job
    assert later.job_type is job.job_type
    assert later.name == job.name
    req = later.request(a=1)
    assert req.type == "job"
    assert req.payload == {"a": 1}
    assert req.options.delay == "10m"
    assert job.request(a=1).options.delay is None
    both = later.options(queue="critical")
    assert both.request(a=1).options.delay == "10m"
    assert both.request(a=1).options.queue == "critical"
    assert later.request(a=1).options.queue is None
    assert len(app.registry) == 2  # with the built-in conveyor.webhook


def test_options_rejects_unknown_option(app: Conveyor) -> None:
    @app.job
    def job() -> None: ...

    with pytest.raises(TypeError):
        job.options(colour="red")


def test_building_jobs_does_not_connect(app: Conveyor) -> None:
    @app.job
    def job() -> None: ...

    assert app._client is None
    assert app._settings is None
