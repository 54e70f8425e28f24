"""Webhooks against a real local HTTP server and real worker processes: signed, masked,
retried as jobs of their own, redirects to other hosts refused, a timeout per delivery, and
deliveries that outlive the worker that owed them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conveyor import Conveyor, State
from conveyor.api import create_app
from conveyor.core.errors import ConfigurationError
from conveyor.core.registry import Registry
from conveyor.core.settings import load_settings
from conveyor.core.webhooks import WEBHOOK_QUEUE, WEBHOOK_TYPE, InvalidWebhook
from tests.apps import webhooks as hooks
from tests.conftest import Backend, wait_for

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
APP = "tests.apps.webhooks:app"
FAST_HOOKS = {"CONVEYOR_WEBHOOK_BACKOFF_SECONDS": "0.2", "CONVEYOR_WEBHOOK_SECRET": SECRET}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server. Each path answers from its script (status, seconds to wait,
    Location), one entry per request, the last repeated; unknown paths answer 200."""

    port: int = 0
    scripts: dict[str, list[tuple[int, float, str | None]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def answer(self, path: str) -> tuple[int, float, str | None]:
        with self.lock:
            script = self.scripts.get(path) or [(200, 0.0, None)]
            return script.pop(0) if len(script) > 1 else script[0]

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            status, pause, location = state.answer(self.path)
            with state.lock:
                state.received.append(Received(self.path, dict(self.headers), body))
            time.sleep(pause)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def client_app(backend: Backend, hooked_url: str | None = None, **overrides: Any) -> Conveyor:
    """A client of the webhook test types; ``hooked`` gets ``hooked_url`` as its type-level
    webhook (URLs are resolved at enqueue, so the worker's own copy does not matter)."""
    app = Conveyor(backend.settings(**overrides))
    registry = Registry()
    for job_type in hooks.app.registry:
        if job_type.name == "hooked":
            job_type = replace(job_type, webhook=hooked_url)
        registry.add(job_type)
    app.registry = registry
    backend.apps.append(app)
    return app


def start_worker(backend: Backend, **env: str) -> None:
    backend.worker("--concurrency", "4", app=APP, **(FAST_HOOKS | env))


def deliveries(app: Conveyor, job_id: str, count: int = 1, terminal: bool = True) -> list[Any]:
    """Wait until the job has ``count`` delivery jobs (all terminal if asked)."""

    def ready() -> list[Any] | None:
        found = app.webhook_deliveries(job_id)
        if len(found) < count or (terminal and not all(v.terminal for v in found)):
            return None
        return found

    return wait_for(ready, timeout=30, what=f"{count} webhook delivery job(s) of {job_id}")


def verify(received: Received) -> None:
    """The Standard Webhooks signature, checked independently of Conveyor's code."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    msg_id, stamp = received.headers["webhook-id"], received.headers["webhook-timestamp"]
    signed = f"{msg_id}.{stamp}.".encode() + received.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    versions = received.headers["webhook-signature"].split()
    assert f"v1,{expected}" in versions
    assert abs(int(stamp) - time.time()) < 120


def test_completed_job_with_a_type_webhook_posts_its_masked_view_signed(
    db_backend: Backend, receiver: Receiver
) -> None:
    app = client_app(db_backend, hooked_url=receiver.url("/done"))
    start_worker(db_backend)
    job = app.enqueue("hooked", {"n": 7, "api_key": "sk-very-secret"})
    assert app.wait(job.id, timeout=30).state is State.COMPLETED

    (delivery,) = deliveries(app, job.id)
    assert delivery.type == WEBHOOK_TYPE and delivery.queue == WEBHOOK_QUEUE
    assert delivery.state is State.COMPLETED
    assert delivery.result == {"status": 200, "url": receiver.url("/done")}
    (received,) = receiver.at("/done")
    verify(received)
    assert received.headers["webhook-id"] == delivery.id
    sent = received.json
    assert sent["type"] == "job.completed"
    assert sent["data"]["id"] == job.id and sent["data"]["state"] == "completed"
    assert sent["data"]["result"] == {"n": 7}
    assert sent["data"]["payload"]["api_key"] == "***"
    assert "sk-very-secret" not in received.body.decode()
    assert "meta" not in sent["data"]

    # A job of a type without a webhook gets no delivery job.
    other = app.enqueue("plain", {"n": 1})
    app.wait(other.id, timeout=30)
    assert app.get(other.id).meta is None  # never enters conveyor_jobs_webhook_due
    assert app.webhook_deliveries(other.id) == []
    assert len(app.list(type=WEBHOOK_TYPE).items) == 1


def test_per_enqueue_webhook_on_a_failing_job_and_a_global_one_per_state(
    db_backend: Backend, receiver: Receiver
) -> None:
    app = client_app(db_backend, webhook_completed=receiver.url("/global-completed"))
    start_worker(db_backend)
    failing = app.enqueue("broken", {"why": "no"}, webhook=receiver.url("/mine"))
    done = app.enqueue("plain", {"n": 2})
    assert app.wait(failing.id, timeout=30).state is State.FAILED
    assert app.wait(done.id, timeout=30).state is State.COMPLETED

    (mine,) = deliveries(app, failing.id)
    assert mine.payload["event"] == "failed" and mine.state is State.COMPLETED
    (received,) = receiver.at("/mine")
    verify(received)
    assert received.json["type"] == "job.failed"
    assert received.json["data"]["error"]["message"] == "no"

    deliveries(app, done.id)
    (global_one,) = receiver.at("/global-completed")
    assert global_one.json["data"]["id"] == done.id
    # The global webhook is for completed jobs only: the failed job was told once, by its own.
    assert len(receiver.received) == 2

    # A waiting job canceled by a client ends too.
    later = app.enqueue("plain", {"n": 3}, delay=600, webhook=receiver.url("/canceled"))
    app.cancel(later.id)
    (canceled,) = deliveries(app, later.id)
    assert canceled.payload["event"] == "canceled"
    assert receiver.at("/canceled")[0].json["type"] == "job.canceled"


def test_a_server_that_fails_twice_then_recovers_gets_it_on_the_third_attempt(
    db_backend: Backend, receiver: Receiver
) -> None:
    receiver.scripts["/flaky"] = [(500, 0, None), (500, 0, None), (204, 0, None)]
    app = client_app(db_backend)
    start_worker(db_backend)
    job = app.enqueue("plain", {"n": 3}, webhook=receiver.url("/flaky"))
    (delivery,) = deliveries(app, job.id)

    assert delivery.state is State.COMPLETED and delivery.attempt == 3
    log = delivery.attempts
    assert [a.outcome for a in log] == ["error", "error", "completed"]
    assert [a.error_type for a in log[:2]] == ["WebhookRejected", "WebhookRejected"]
    assert "HTTP 500" in (log[0].error_message or "")
    posts = receiver.at("/flaky")
    assert len(posts) == 3
    assert len({p.headers["webhook-id"] for p in posts}) == 1  # one message, three tries
    for post in posts:
        verify(post)

    # The delivery log over HTTP.
    with TestClient(create_app(app)) as api:
        listed = api.get(f"/jobs/{job.id}/webhooks")
        assert listed.status_code == 200
        (entry,) = listed.json()
        assert entry["id"] == delivery.id
        errors = [a["error"] for a in entry["attempts"]]
        assert [e["type"] for e in errors[:2]] == ["WebhookRejected"] * 2
        assert "HTTP 500" in errors[0]["message"] and errors[2] is None
        assert api.get(f"/jobs/{job.id}/webhooks").json() == listed.json()


def test_redirects_stay_on_the_host(db_backend: Backend, receiver: Receiver) -> None:
    receiver.scripts["/moved"] = [(307, 0, "/landing")]
    receiver.scripts["/away"] = [(307, 0, receiver.url("/landing", host="localhost"))]
    app = client_app(db_backend)
    start_worker(db_backend)
    moved = app.enqueue("plain", {"n": 1}, webhook=receiver.url("/moved"))
    away = app.enqueue("plain", {"n": 2}, webhook=receiver.url("/away"))

    (followed,) = deliveries(app, moved.id)
    assert followed.state is State.COMPLETED
    assert followed.result == {"status": 200, "url": receiver.url("/landing")}
    (refused,) = deliveries(app, away.id)
    assert refused.state is State.FAILED and refused.attempt == 1  # not retried
    assert refused.error["type"] == "WebhookRedirectRefused"
    assert "another host" in refused.error["message"]
    landed = [r.json["data"]["id"] for r in receiver.at("/landing")]
    assert landed == [moved.id]


def test_a_delivery_times_out(db_backend: Backend, receiver: Receiver) -> None:
    receiver.scripts["/slow"] = [(200, 3.0, None), (200, 0, None)]
    app = client_app(db_backend)
    start_worker(db_backend, CONVEYOR_WEBHOOK_TIMEOUT_SECONDS="0.5")
    job = app.enqueue("plain", {"n": 1}, webhook=receiver.url("/slow"))
    (delivery,) = deliveries(app, job.id)
    assert delivery.state is State.COMPLETED and delivery.attempt == 2
    first = delivery.attempts[0]
    assert first.error_type == "WebhookTimeout"
    assert first.finished_at is not None and first.started_at is not None
    assert (first.finished_at - first.started_at).total_seconds() < 2.5


def test_a_delivery_outlives_the_worker_that_owed_it(
    db_backend: Backend, receiver: Receiver
) -> None:
    receiver.scripts["/down"] = [(503, 0, None)]
    app = client_app(db_backend)
    start_worker(db_backend, CONVEYOR_WEBHOOK_BACKOFF_SECONDS="0.5")
    job = app.enqueue("plain", {"n": 1}, webhook=receiver.url("/down"))
    app.wait(job.id, timeout=30)
    wait_for(lambda: receiver.at("/down"), timeout=30, what="a first, failed delivery")
    db_backend.workers[0].signal(signal.SIGKILL)
    db_backend.workers[0].wait()
    receiver.scripts["/down"] = [(200, 0, None)]

    start_worker(db_backend)
    (delivery,) = deliveries(app, job.id)
    assert delivery.state is State.COMPLETED
    # The first try was refused (503), or cut short by the kill (its lease then expired).
    assert delivery.attempts[0].error_type in ("WebhookRejected", "WorkerLost")
    assert receiver.at("/down")[-1].json["data"]["id"] == job.id


def test_non_http_webhooks_are_refused_at_enqueue_and_registration(
    sqlite_backend: Backend,
) -> None:
    app = client_app(sqlite_backend)
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http://", "/relative", "x" * 3000):
        with pytest.raises(InvalidWebhook):
            app.enqueue("plain", {"n": 1}, webhook=url)
    with pytest.raises(ConfigurationError, match="http:// or https://"):

        @app.job(webhook="javascript:alert(1)")
        def nope() -> None: ...

    with pytest.raises(ConfigurationError, match="CONVEYOR_WEBHOOK_FAILED"):
        load_settings(webhook_failed="gopher://x")
    with pytest.raises(ConfigurationError, match="CONVEYOR_WEBHOOK_SECRET"):
        Conveyor(webhook_secret="not-whsec").settings  # noqa: B018

    with TestClient(create_app(app)) as api:
        response = api.post("/jobs", json={"type": "plain", "payload": {"n": 1},
                                           "webhook": "ftp://example.com/x"})  # fmt: skip
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_webhook"
        ok = api.post("/jobs", json={"type": "plain", "payload": {"n": 1},
                                     "webhook": "https://example.com/hook"})  # fmt: skip
        assert ok.status_code == 202
        stored = app.get(ok.json()["id"]).meta
        assert stored == {"webhook": dict.fromkeys(["completed", "failed", "canceled"],
                                                   "https://example.com/hook")}  # fmt: skip
