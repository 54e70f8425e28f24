"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real
`conveyor api` and `conveyor worker` on PostgreSQL + Redis and on SQLite.

Every page each test opens is watched: a console error (a blocked script or style is one),
an uncaught exception or a failed request fails the test (tests/ui/conftest.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Backend, wait_for
from tests.ui.conftest import Dashboard, Pages, free_port, start_dashboard

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"


def enqueue(d: Dashboard, job_type: str, **payload: Any) -> str:
    queue = payload.pop("queue", None)
    body: dict[str, Any] = {"type": job_type, "payload": payload}
    if queue:
        body["queue"] = queue
    with d.http() as http:
        response = http.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def job(d: Dashboard, job_id: str) -> dict[str, Any]:
    with d.http() as http:
        return dict(http.get(f"/jobs/{job_id}").json())


def wait_state(d: Dashboard, job_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for(
        lambda: (j := job(d, job_id))["state"] == state and j,
        timeout=timeout,
        what=f"job {job_id} to be {state}",
    )


def log_in(page: Page, d: Dashboard, token: str) -> None:
    page.goto(d.ui)
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{d.ui}")


def test_log_in_find_a_job_watch_it_move_and_cancel_it(pg_redis: Backend, new_page: Pages) -> None:
    d = start_dashboard(pg_redis, CONVEYOR_API_TOKENS=ADMIN)
    job_id = enqueue(d, "crawl", steps=40, pause=0.25)
    page = new_page()

    page.goto(d.ui)  # no session: the login form, which refuses a wrong token
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid here.")
    page.get_by_label("Token").fill(ADMIN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(d.ui)

    page.get_by_label("Find a job by id").fill(job_id.upper())  # as pasted from anywhere
    page.get_by_label("Find a job by id").press("Enter")
    expect(page).to_have_url(f"{d.ui}/jobs/{job_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("crawl")
    expect(page.locator("table.attempts")).to_contain_text("running", timeout=10_000)

    # The progress bar moves with the job's event stream, without a reload.
    page.evaluate("window.__same_document = true")
    bar = page.locator('[data-field="progress"]')
    expect(bar).to_be_visible(timeout=15_000)
    first = float(bar.get_attribute("value") or 0)
    wait_for(
        lambda: float(bar.get_attribute("value") or 0) >= first + 10,
        timeout=15,
        what="the progress bar to move",
    )
    expect(page.locator('[data-field="message"]')).to_have_text(re.compile(r"page \d+ of 40"))
    assert page.evaluate("window.__same_document") is True

    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel this job?"
    page.get_by_role("button", name="Cancel job").click()
    expect(page.get_by_role("status")).to_have_text("Job canceled.")
    expect(page.locator("[data-state]")).to_have_text("canceled", timeout=15_000)
    assert job(d, job_id)["state"] == "canceled"


@pytest.mark.parametrize("backend_name", ["sqlite_backend", "pg_redis"])
def test_bulk_retry_of_failed_jobs_by_filter(
    backend_name: str, request: pytest.FixtureRequest, new_page: Pages
) -> None:
    backend: Backend = request.getfixturevalue(backend_name)
    d = start_dashboard(backend)
    failed = [enqueue(d, "send_email", to=f"u{i}@example.com", fail=True) for i in range(3)]
    fine = enqueue(d, "send_email", to="ok@example.com")
    other = enqueue(d, 'say "hi" <b>bold</b>', text="x")
    for job_id in failed:
        wait_state(d, job_id, "failed")
    wait_state(d, fine, "completed")
    wait_state(d, other, "completed")

    page = new_page()
    page.goto(f"{d.ui}/jobs")
    page.get_by_label("State").select_option("failed")
    page.get_by_label("Type").fill("send_email")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(3)
    page.get_by_role("button", name="Retry…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Retry every job matching state = failed, type = send_email"
    )
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Retried 3 jobs.")
    for job_id in failed:
        done = wait_state(d, job_id, "completed")
        assert [a["outcome"] for a in done["attempts"]][-1] == "completed"
    assert job(d, fine)["attempt"] == 1  # not matched: left alone


@pytest.mark.parametrize("backend_name", ["sqlite_backend", "pg_redis"])
def test_pause_resume_and_trigger_a_schedule(
    backend_name: str, request: pytest.FixtureRequest, new_page: Pages
) -> None:
    d = start_dashboard(request.getfixturevalue(backend_name))
    page = new_page()

    def listed() -> bool:
        page.goto(f"{d.ui}/schedules")
        return page.locator('tr[data-schedule="nightly-report"]').count() == 1

    wait_for(listed, timeout=20, what="the code schedule to be synced")
    row = page.locator('tr[data-schedule="nightly-report"]')
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text("Schedule paused.")
    expect(page.locator('tr[data-schedule="nightly-report"]')).to_contain_text("paused")
    with d.http() as http:
        assert http.get("/schedules/nightly-report").json()["paused"] is True

    page.locator('tr[data-schedule="nightly-report"]').get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text("Schedule resumed.")
    with d.http() as http:
        assert http.get("/schedules/nightly-report").json()["paused"] is False

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('tr[data-schedule="nightly-report"]').get_by_role(
        "button", name="Trigger now"
    ).click()
    expect(page.get_by_role("status")).to_have_text("Schedule triggered.")
    with d.http() as http:
        fired = http.get("/schedules/nightly-report").json()["last_fire"]
    assert fired["outcome"] == "triggered" and fired["job_id"]
    wait_state(d, fired["job_id"], "completed")


def test_everything_shown_is_text_and_the_csp_blocks_inline_script(
    sqlite_backend: Backend, new_page: Pages
) -> None:
    d = start_dashboard(sqlite_backend)
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'"
    job_id = enqueue(d, 'say "hi" <b>bold</b>', text=hostile)
    secret = enqueue(d, "send_email", to="a@example.com", api_key="sk-live-abcdefghijkl")
    wait_state(d, job_id, "completed")
    wait_state(d, secret, "completed")
    page = new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    response = page.goto(f"{d.ui}/jobs/{job_id}")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    expect(page.get_by_role("heading", level=1)).to_have_text('say "hi" <b>bold</b>')
    assert page.locator("h1 b").count() == 0
    expect(page.locator("[data-payload]")).to_contain_text(hostile.replace('"', '\\"'))
    expect(page.locator("[data-result]")).to_contain_text("<script>alert(1)</script>")
    page.goto(f"{d.ui}/jobs")
    expect(page.locator("table.jobs")).to_contain_text('say "hi" <b>bold</b>')

    # The browser enforces the policy: an inline script is refused (and reported).
    with pytest.raises(Exception):  # noqa: B017 - Playwright's error type for a blocked tag
        page.add_script_tag(content="window.__inline_ran = true")
    assert page.evaluate("window.__inline_ran === undefined")
    new_page.expected("violates the following Content Security Policy directive")
    assert dialogs == []

    page.goto(f"{d.ui}/jobs/{secret}")
    expect(page.locator("[data-payload]")).to_contain_text('"api_key": "***"')
    assert "sk-live-abcdefghijkl" not in page.content()


def test_read_only_token_sees_no_action_and_cannot_act(pg_redis: Backend, new_page: Pages) -> None:
    d = start_dashboard(pg_redis, CONVEYOR_API_TOKENS=ADMIN, CONVEYOR_READONLY_TOKENS=READER)
    job_id = enqueue(d, "send_email", to="x@example.com", fail=True)
    wait_state(d, job_id, "failed")
    page = new_page()
    log_in(page, d, READER)
    expect(page.locator(".top")).to_contain_text("read-only")
    page.goto(f"{d.ui}/jobs/{job_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("send_email")
    assert page.get_by_role("button", name="Retry job").count() == 0
    page.goto(f"{d.ui}/jobs?state=failed")
    assert page.get_by_role("button", name="Retry…").count() == 0
    # Forged anyway, with the page's own CSRF token: refused, nothing changed.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    refused = page.request.post(
        f"{d.ui}/jobs/{job_id}/retry", form={"csrf": cookies["conveyor_csrf"]}
    )
    assert refused.status == 403
    assert "read-only" in refused.text()
    assert job(d, job_id)["state"] == "failed"
    with d.http(READER) as http:  # the same token over the API: reads, never writes
        assert http.get(f"/jobs/{job_id}").status_code == 200
        assert http.post(f"/jobs/{job_id}/retry").status_code == 403


@pytest.mark.parametrize("backend_name", ["sqlite_backend", "pg_redis"])
def test_overview_updates_live_and_fits_a_phone(
    backend_name: str, request: pytest.FixtureRequest, new_page: Pages
) -> None:
    d = start_dashboard(request.getfixturevalue(backend_name))
    page = new_page(color_scheme="dark", width=390, height=844)
    page.goto(d.ui)
    expect(page.locator("[data-workers-alive]")).to_have_text("1", timeout=15_000)
    page.evaluate("window.__same_document = true")
    for _ in range(4):  # a queue no worker serves: its backlog stays, and shows up
        enqueue(d, "send_email", to="p@example.com", queue="parked")
    row = page.locator("table.queues tr", has_text="parked")
    expect(row).to_contain_text("4", timeout=10_000)
    assert page.evaluate("window.__same_document") is True
    # Usable at a phone's width: nothing pushes the page sideways (tables scroll inside).
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    light_page = new_page(color_scheme="light")
    light_page.goto(d.ui)
    assert light_page.evaluate("getComputedStyle(document.body).backgroundColor") != dark


def test_redis_unreachable_shows_a_banner(pg_redis: Backend, new_page: Pages) -> None:
    d = start_dashboard(
        pg_redis, worker=False, CONVEYOR_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    page = new_page()
    page.goto(d.ui)
    expect(page.locator("[data-banner]")).to_contain_text("Redis unreachable")
