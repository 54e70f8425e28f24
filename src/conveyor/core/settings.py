"""Settings from ``CONVEYOR_*`` environment variables, typed and validated."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.core.errors import ConfigurationError
from conveyor.core.names import InvalidQueueName, check_queue_name
from conveyor.core.webhooks import InvalidWebhook, check_webhook_url, signing_key


class Settings(BaseSettings):
    """Every knob Conveyor reads; each maps to ``CONVEYOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./conveyor.db",
        description="SQLAlchemy URL of the database; postgresql:// picks psycopg 3.",
    )
    redis_url: str | None = Field(
        None, description="Redis URL for dispatch; unset means dispatch through the database."
    )
    redis_prefix: str = Field("conveyor", description="Prefix of every Redis key.")
    lease_seconds: float = Field(30.0, gt=0, description="How long a claim holds a job.")
    heartbeat_seconds: float = Field(10.0, gt=0, description="How often a worker renews leases.")
    reconcile_seconds: float = Field(
        5.0, gt=0, description="How often a worker promotes due jobs and recovers lost ones."
    )
    dispatch_window: int = Field(
        10_000,
        ge=1,
        description="Most job ids Redis holds per queue; the rest wait in the database and are "
        "fed in as the stream drains.",
    )
    poll_seconds: float = Field(
        0.05, gt=0, description="Idle poll interval of database dispatch (SQLite, no Redis)."
    )
    concurrency: int = Field(10, ge=1, description="Jobs in flight per worker process.")
    prefetch: int | None = Field(
        None,
        ge=0,
        description="Most jobs a worker process claims ahead of its free slots, to start as "
        "they free (quick jobs then cost fewer claims). Unset: as many as its slots are "
        "expected to start within 50 ms, up to 500, none while its jobs are slow; 0: none.",
    )
    queues: str = Field(
        "default", description="Queues a worker serves with weights: 'critical=6,default=3,low=1'."
    )
    grace_seconds: float = Field(
        30.0, ge=0, description="How long a stopping worker lets running jobs finish."
    )
    max_payload_bytes: int = Field(1024 * 1024, gt=0, description="Largest JSON payload.")
    max_result_bytes: int = Field(1024 * 1024, gt=0, description="Largest JSON result.")
    retention_completed_seconds: float = Field(
        7 * 86400.0, ge=0, description="Completed jobs older than this are deleted (0: never)."
    )
    retention_failed_seconds: float = Field(
        30 * 86400.0, ge=0, description="Failed and canceled jobs older than this are deleted."
    )
    api_tokens: str | None = Field(
        None,
        description="Bearer tokens the API accepts: comma-separated, or @/path/to/file "
        "(one per line). Unset: no authentication.",
    )
    readonly_tokens: str | None = Field(
        None,
        description="Tokens that may only read (GET and HEAD on the API, the dashboard "
        "without its actions): comma-separated or @/path/to/file.",
    )
    ui_readonly: bool = Field(
        False, description="The dashboard shows everything and refuses every action."
    )
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="Largest HTTP request body.")
    webhook_completed: str | None = Field(
        None, description="URL told of every completed job (unless its type or enqueue names one)."
    )
    webhook_failed: str | None = Field(None, description="URL told of every failed job.")
    webhook_canceled: str | None = Field(None, description="URL told of every canceled job.")
    webhook_secret: SecretStr | None = Field(
        None,
        description="Signing secret of webhooks, 'whsec_' and base64 bytes (Standard "
        "Webhooks); unset: deliveries are not signed.",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="How long one webhook delivery may take."
    )
    webhook_backoff_seconds: float = Field(
        5.0,
        gt=0,
        description="Longest wait before a failed webhook delivery's first retry; doubled on "
        "each, up to 2 h (21 attempts span at most about 21 h).",
    )
    sse_heartbeat_seconds: float = Field(
        15.0, gt=0, description="Idle interval after which an event stream sends a comment."
    )
    progress_flush_seconds: float = Field(
        0.25, gt=0, description="How often coalesced progress updates are written."
    )
    log_format: Annotated[
        Literal["auto", "json", "text"],
        BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    ] = Field(
        "auto",
        description="Log lines as JSON objects (one a line) or text; auto: text when stderr "
        "is a terminal, JSON otherwise.",
    )
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
    ] = Field(
        "INFO",
        description="Least severe log lines shown: DEBUG adds each job's start and failure "
        "tracebacks, INFO each job's end, WARNING only failures and problems.",
    )

    @field_validator("database_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a URL such as postgresql://host/db or sqlite:///./file.db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _blank_redis_is_none(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("webhook_completed", "webhook_failed", "webhook_canceled")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return check_webhook_url(value)
        except InvalidWebhook as exc:
            raise ValueError(exc.message) from None

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        signing_key(value.get_secret_value())  # a ValueError names what is wrong
        return value


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` on top; errors name the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"CONVEYOR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


def api_tokens(settings: Settings) -> frozenset[str]:
    """The configured API tokens (empty: authentication off)."""
    return _tokens(settings.api_tokens, "CONVEYOR_API_TOKENS")


def readonly_tokens(settings: Settings) -> frozenset[str]:
    """Tokens that may only read; they turn authentication on like API tokens do."""
    return _tokens(settings.readonly_tokens, "CONVEYOR_READONLY_TOKENS")


def _tokens(raw: str | None, variable: str) -> frozenset[str]:
    if not raw or not raw.strip():
        return frozenset()
    if raw.startswith("@"):
        try:
            with open(raw[1:]) as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise ConfigurationError(f"{variable}: cannot read {raw[1:]}: {exc}") from None
        tokens = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    else:
        tokens = {t.strip() for t in raw.split(",") if t.strip()}
    if not tokens:
        raise ConfigurationError(f"{variable} is set but holds no token")
    return frozenset(tokens)


def parse_queues(spec: str) -> dict[str, int]:
    """'critical=6,default=3,low=1' -> {'critical': 6, ...}; a bare name weighs 1."""
    weights: dict[str, int] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        name, _, weight_text = part.partition("=")
        name = name.strip()
        if not name:
            raise ConfigurationError(f"queue spec {spec!r}: empty queue name")
        try:
            check_queue_name(name)
        except InvalidQueueName as exc:
            raise ConfigurationError(f"queue spec {spec!r}: {exc.message}") from None
        try:
            weight = int(weight_text) if weight_text else 1
        except ValueError:
            raise ConfigurationError(
                f"queue spec {spec!r}: weight of {name!r} must be a whole number"
            ) from None
        if weight < 1:
            raise ConfigurationError(f"queue spec {spec!r}: weight of {name!r} must be >= 1")
        weights[name] = weight
    if not weights:
        raise ConfigurationError("queue spec is empty; name at least one queue")
    return weights
