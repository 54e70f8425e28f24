"""Dashboard fixtures: a real `conveyor api` and `conveyor worker` on a real database, and
Debian's Chromium driven by Playwright (no browser download; the test command installs the
package, and these tests fail, never skip, without it)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from conveyor import Conveyor
from tests.apps.ui import app as ui_app
from tests.conftest import Backend, WorkerProcess, wait_for

UI_APP = "tests.apps.ui:app"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",  # this machine's network is closed: no calls out
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError(
            "Chromium is not installed: the dashboard tests need Debian's `chromium` "
            "(scripts/test installs it with apt-get)"
        )
    return found


# Per test, not per session: Playwright's sync API keeps an event loop running in this thread
# while it is started, and later tests of the same pytest worker call asyncio.run().
@pytest.fixture
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Dashboard:
    """A running API (with its dashboard) and worker, and a client app to enqueue with."""

    url: str
    backend: Backend
    app: Conveyor
    api: WorkerProcess
    token: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ui(self) -> str:
        return f"{self.url}/ui"

    def http(self, token: str | None = None) -> httpx.Client:
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dashboard(backend: Backend, *, worker: bool = True, **env: str) -> Dashboard:
    """`conveyor api` on a free port (and a worker) with the dashboard's test app."""
    port = free_port()
    api = backend.worker("--port", str(port), command="api", app=UI_APP, **env)
    if worker:
        backend.worker("--concurrency", "10", "--with-scheduler", app=UI_APP, **env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if api.proc.poll() is not None:
            raise AssertionError(f"the API exited with {api.proc.returncode}:\n{api.log()}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=30, what="the API to answer /healthz")
    app = Conveyor(
        backend.settings(**{k.removeprefix("CONVEYOR_").lower(): v for k, v in env.items()})
    )
    app.registry = ui_app.registry
    backend.apps.append(app)
    return Dashboard(url, backend, app, api, env.get("CONVEYOR_API_TOKENS"))


def watch(page: Page, problems: list[str]) -> Page:
    """Collect what must never happen on a dashboard page: a console error (a blocked
    script or style is one: CSP violations are reported there), an uncaught exception, a
    dialog nobody expected, a failed request for one of its own files."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "icon.svg" not in (message.location or {}).get("url", ""):
            problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: _failed(r, problems))
    return page


def _failed(request: Any, problems: list[str]) -> None:
    # An event stream or a refresh cut short by navigating away is not a problem, nor the
    # favicon, which the browser fetches lazily (at a test's end, the server may be gone).
    if request.resource_type in ("eventsource", "fetch") or "/events" in request.url:
        return
    if request.url.endswith("/ui/static/icon.svg"):
        return
    problems.append(f"request failed: {request.url} {request.failure}")


class Pages:
    """Pages in fresh browser contexts (no cookies shared); ``problems`` collects what went
    wrong on any of them, and the test fails at its end unless it is empty."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.problems: list[str] = []

    def __call__(self, color_scheme: str = "light", width: int = 1280, height: int = 900) -> Page:
        context = self.browser.new_context(
            color_scheme=color_scheme,  # type: ignore[arg-type]
            viewport={"width": width, "height": height},
        )
        self.contexts.append(context)
        return watch(context.new_page(), self.problems)

    def expected(self, fragment: str) -> None:
        """A problem the test provoked on purpose: it must have happened, and is cleared."""
        matching = [p for p in self.problems if fragment in p]
        assert matching, f"expected a problem mentioning {fragment!r}, saw {self.problems}"
        self.problems[:] = [p for p in self.problems if fragment not in p]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Pages]:
    pages = Pages(browser)
    yield pages
    for context in pages.contexts:
        context.close()
    assert not pages.problems, "\n".join(pages.problems)
