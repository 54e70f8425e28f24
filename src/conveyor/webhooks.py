"""The built-in job type that delivers one webhook: ``conveyor.webhook`` on the queue
``conveyor.webhooks``, registered by every Conveyor app.

A delivery job reads the ended job as it is at delivery time (masked like every view),
POSTs it as JSON signed per Standard Webhooks, and raises on anything but a 2xx so that the
worker retries it with backoff; its attempts, with their errors, are the delivery log. The
rules (URLs, signature, body, retry span) are ``core.webhooks``; which ends get a delivery
job is ``reconciler.webhooks``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin

from conveyor.core import webhooks
from conveyor.core.errors import JobNotFound, Permanent
from conveyor.core.registry import JobType, job_type_for
from conveyor.core.settings import Settings
from conveyor.core.states import State
from conveyor.core.views import JobView

if TYPE_CHECKING:  # imported where a delivery is made: every process imports this module
    import httpx


class Context(Protocol):
    """What a delivery reads of its ``ctx``: its own id, the message id of every try."""

    job_id: str


class WebhookRejected(Exception):  # noqa: N818 - the name is what the delivery log shows
    """The endpoint answered, but not with a 2xx: retried."""


class WebhookTimeout(Exception):  # noqa: N818
    """The endpoint did not answer within CONVEYOR_WEBHOOK_TIMEOUT_SECONDS: retried."""


class WebhookUnreachable(Exception):  # noqa: N818
    """The endpoint could not be reached (connection refused, DNS, TLS): retried."""


class WebhookRedirectRefused(Permanent):
    """The endpoint redirected to another host (or to a URL that is not http(s), or too
    many times): never followed, and not retried."""


def delivery_type(
    read: Callable[[str], JobView], settings: Callable[[], Settings], backoff_s: float,
    timeout_s: float,
) -> JobType:  # fmt: skip
    """The ``conveyor.webhook`` job type. ``read``: a job as it may be shown (masked);
    ``settings``: the process's settings, read at delivery (secret, timeout)."""

    def deliver(ctx: Context, job_id: str, event: str, attempt: int, url: str) -> dict[str, Any]:
        conf = settings()
        try:
            view = read(job_id)
        except JobNotFound:
            raise Permanent(f"job {job_id} no longer exists") from None
        now = datetime.now(UTC)
        body = webhooks.body(view, State(event), now)
        secret = conf.webhook_secret
        key = webhooks.signing_key(secret.get_secret_value()) if secret is not None else None
        headers = webhooks.headers(ctx.job_id, int(now.timestamp()), body, key)
        status, final_url = post(url, body, headers, conf.webhook_timeout_seconds)
        return {"status": status, "url": final_url}

    return job_type_for(
        deliver,
        name=webhooks.WEBHOOK_TYPE,
        queue=webhooks.WEBHOOK_QUEUE,
        retries=webhooks.DELIVERY_ATTEMPTS - 1,
        backoff_base=backoff_s,
        backoff_cap=max(backoff_s, webhooks.BACKOFF_CAP_S),
        # A backstop: each request (and each redirect's) has its own timeout.
        timeout=timeout_s * (webhooks.MAX_REDIRECTS + 1) + 5,
    )


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, str]:
    """POST ``body`` to ``url``, following redirects only to the same host (at most
    MAX_REDIRECTS); the status and the URL that answered. Raises unless it is a 2xx."""
    import httpx  # here, not at the top: ~50 ms off every process's start

    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for _ in range(webhooks.MAX_REDIRECTS + 1):
            status, location = _send(client, url, body, headers)
            if location is None:
                if not 200 <= status < 300:
                    raise WebhookRejected(f"HTTP {status} from {url}")
                return status, url
            url = _followed(url, location)
    raise WebhookRedirectRefused(f"more than {webhooks.MAX_REDIRECTS} redirects, last to {url}")


def _send(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    """The status, and where a redirect points (None if it is not one). The answer's body
    is never read: an endpoint cannot make a delivery read megabytes."""
    import httpx

    try:
        request = client.build_request("POST", url, content=body, headers=headers)
        response = client.send(request, stream=True)
    except httpx.TimeoutException:
        raise WebhookTimeout(f"no answer from {url} within the timeout") from None
    except httpx.HTTPError as exc:
        raise WebhookUnreachable(f"{url}: {type(exc).__name__}: {exc}") from None
    response.close()
    location = response.headers.get("location") if response.is_redirect else None
    return response.status_code, location


def _followed(url: str, location: str) -> str:
    target = urljoin(url, location)
    try:
        webhooks.check_webhook_url(target)
    except webhooks.InvalidWebhook as exc:
        raise WebhookRedirectRefused(f"{url} redirected to {target[:200]}: {exc}") from None
    if not webhooks.same_host(url, target):
        raise WebhookRedirectRefused(f"{url} redirected to another host: {target[:200]}")
    return target
