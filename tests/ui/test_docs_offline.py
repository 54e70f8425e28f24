"""Swagger UI at /docs works offline: every file it loads comes from this server."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.conftest import Backend
from tests.ui.conftest import Pages, start_dashboard


def test_docs_load_nothing_from_elsewhere(sqlite_backend: Backend, new_page: Pages) -> None:
    d = start_dashboard(sqlite_backend, worker=False)
    page = new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{d.url}/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("Conveyor", timeout=15_000)
    expect(page.locator(".opblock-summary-path", has_text="/jobs/bulk")).to_be_visible()
    assert requested and all(url.startswith(d.url) for url in requested), requested
