"""Webhooks, the pure part: which URL a job's end is told to, the URL rule, the Standard
Webhooks signature, and the delivery job's retry policy. No I/O: delivery is
``conveyor.webhooks``, finding ended jobs is ``reconciler.webhooks``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from conveyor.core.errors import ConveyorError
from conveyor.core.retry import RetryPolicy
from conveyor.core.states import TERMINAL, State
from conveyor.core.storable import text_problem
from conveyor.core.views import JobView

#: The built-in job type that delivers one webhook, and the queue it runs on.
WEBHOOK_TYPE = "conveyor.webhook"
WEBHOOK_QUEUE = "conveyor.webhooks"
#: ``meta`` keys: the URL per terminal state (set at enqueue), the last event a delivery job
#: was made for (``"<state>:<attempt>"``), and the delivery jobs made so far (the log).
META_URLS = "webhook"
META_SENT = "webhook_sent"
META_DELIVERIES = "webhook_deliveries"

MAX_URL_LENGTH = 2048
MAX_REDIRECTS = 3  # to the same host; a redirect elsewhere is refused
SECRET_PREFIX = "whsec_"
#: Retries: each waits up to ``base · 2^(n-1)`` s (full jitter), capped at two hours; 21
#: attempts with the default 5 s base span at most about 21 h, about half that on average.
DELIVERY_ATTEMPTS = 21
BACKOFF_CAP_S = 7200.0


class InvalidWebhook(ConveyorError):
    """A webhook must be an http:// or https:// URL with a host."""

    code = "invalid_webhook"


def check_webhook_url(url: object) -> str:
    """``url`` if it may be called: http(s), a host, at most 2,048 characters, storable text
    without spaces. InvalidWebhook says what is wrong (refused at enqueue and ``@app.job``,
    so a bad URL never reaches a worker)."""
    if not isinstance(url, str):
        raise InvalidWebhook(f"webhook must be a URL string, got {type(url).__name__}")
    if not url or len(url) > MAX_URL_LENGTH:
        raise InvalidWebhook(f"webhook must be 1 to {MAX_URL_LENGTH} characters", url=url[:100])
    if text_problem(url) or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidWebhook("webhook contains spaces or control characters", url=url[:100])
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise InvalidWebhook(f"webhook is not a URL: {exc}", url=url[:100]) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidWebhook(
            f"webhook must be an http:// or https:// URL, not {parts.scheme or 'relative'!r}",
            url=url[:100],
        )
    if not parts.hostname:
        raise InvalidWebhook("webhook URL has no host", url=url[:100])
    return url


def urls_for(
    job_type: str, own: str | None, of_type: str | None, by_state: Mapping[State, str | None]
) -> dict[str, str] | None:
    """The URL to call per terminal state: the enqueue's, else the job type's, else the
    global one for that state; None when there is none (the common case: no ``meta``).
    Delivery jobs never have webhooks of their own (a failing endpoint must not loop)."""
    if job_type == WEBHOOK_TYPE or not (own or of_type or any(by_state.values())):
        return None
    urls = {s.value: url for s in TERMINAL if (url := own or of_type or by_state.get(s))}
    return urls or None


def event_marker(state: State, attempt: int) -> str:
    """Which end of a job a delivery job was made for: a job retried by hand that ends
    again is a new event."""
    return f"{state.value}:{attempt}"


def delivery_key(job_id: str, state: State, attempt: int) -> str:
    """The idempotency key of the delivery job of one end of a job: one delivery job per
    end, however many processes notice it."""
    return f"webhook:{job_id}:{event_marker(state, attempt)}"


def event_type(state: State) -> str:
    return f"job.{state.value}"


def delivery_policy(backoff_s: float) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=DELIVERY_ATTEMPTS, base_s=backoff_s, cap_s=max(backoff_s, BACKOFF_CAP_S)
    )


# -- Standard Webhooks (https://www.standardwebhooks.com) -------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r} (whsec_ and base64 bytes)")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ must be base64") from None
    if len(key) < 16:
        raise ValueError("the key must be at least 16 bytes (24 base64 characters)")
    return key


def signature(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(message_id: str, timestamp_s: int, body: bytes, key: bytes | None) -> dict[str, str]:
    """The request headers: ``webhook-id`` (the delivery job's id, the same on every retry,
    so receivers can drop repeats), ``webhook-timestamp`` (Unix seconds of this attempt) and,
    with a secret, ``webhook-signature``."""
    out = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
    }
    if key is not None:
        out["webhook-signature"] = signature(key, message_id, timestamp_s, body)
    return out


def body(view: JobView, state: State, at: datetime) -> bytes:
    """``{"type": "job.<state>", "timestamp", "data": <the job>}``: ``view`` as shown
    anywhere (masked by the caller), without Conveyor's own ``meta``."""
    data = view.as_dict()
    data.pop("meta", None)
    document = {"type": event_type(state), "timestamp": at.isoformat(), "data": data}
    return json.dumps(document, default=_json_default, separators=(",", ":")).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def same_host(url: str, target: str) -> bool:
    """Whether a redirect from ``url`` to ``target`` stays on its host: same host name and
    port, or the same host name upgraded from http to https on the default ports."""
    a, b = urlsplit(url), urlsplit(target)
    if (a.hostname or "").lower() != (b.hostname or "").lower():
        return False
    if (a.scheme, b.scheme) == ("http", "https"):
        return (a.port or 80) == 80 and (b.port or 443) == 443
    return a.scheme == b.scheme and _port(a.scheme, a.port) == _port(b.scheme, b.port)


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)
