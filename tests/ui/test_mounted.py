"""The API and dashboard mounted under a prefix of the user's own FastAPI app: every link,
asset, form and event stream still works (in a real browser)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import expect

from conveyor import Conveyor
from conveyor.api import create_app
from tests.apps.ui import app as ui_app
from tests.conftest import Backend, wait_for
from tests.ui.conftest import UI_APP, Pages, free_port

PREFIX = "/admin/jobs"


@pytest.fixture
def mounted(pg_redis: Backend) -> Iterator[tuple[str, Conveyor]]:
    conveyor = Conveyor(pg_redis.settings())
    conveyor.registry = ui_app.registry
    pg_redis.apps.append(conveyor)
    user_app = FastAPI()

    @user_app.get("/")
    def home() -> dict[str, str]:
        return {"app": "the user's own"}

    user_app.mount(PREFIX, create_app(conveyor))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(user_app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, timeout=15, what="the user's app to serve")
    pg_redis.worker("--concurrency", "4", app=UI_APP)
    yield url, conveyor
    server.should_exit = True
    thread.join(10)


def test_every_link_works_under_a_prefix(mounted: tuple[str, Conveyor], new_page: Pages) -> None:
    url, _ = mounted
    created = httpx.post(
        f"{url}{PREFIX}/jobs", json={"type": "crawl", "payload": {"steps": 40, "pause": 0.25}}
    )
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert created.json()["links"]["self"] == f"{PREFIX}/jobs/{job_id}"

    page = new_page()
    page.goto(f"{url}{PREFIX}/ui")
    expect(page.locator(".brand")).to_have_attribute("href", f"{PREFIX}/ui")
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page).to_have_url(f"{url}{PREFIX}/ui/jobs")
    page.locator(f'tr[data-job="{job_id}"] a').click()
    expect(page).to_have_url(f"{url}{PREFIX}/ui/jobs/{job_id}")
    bar = page.locator('[data-field="progress"]')
    expect(bar).to_be_visible(timeout=15_000)
    start = float(bar.get_attribute("value") or 0)
    deadline = time.monotonic() + 15
    while float(bar.get_attribute("value") or 0) < start + 10:  # the prefixed event stream
        assert time.monotonic() < deadline, "the progress bar did not move"
        page.wait_for_timeout(200)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel job").click()
    expect(page).to_have_url(f"{url}{PREFIX}/ui/jobs/{job_id}?notice=canceled")
    expect(page.locator("[data-state]")).to_have_text("canceled", timeout=15_000)
    for link in ("Workers", "Schedules", "Overview"):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("link", name=link, exact=True)).to_have_attribute(
            "aria-current", "page"
        )
    assert httpx.get(f"{url}/").json() == {"app": "the user's own"}
