"""What the dashboard's pages show, over HTTP in process (the browser tests drive the same
pages with real worker processes)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade
from tests.api.conftest import api_for
from tests.conftest import Backend


def test_an_unreachable_database_is_named_not_a_500() -> None:
    app = Conveyor(Settings(database_url="postgresql://root@127.0.0.1:1/nothing"))
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        overview = client.get("/ui")
        assert overview.status_code == 200
        assert re.search(r"<b>Database unreachable:</b>[^<]*Connection refused", overview.text)
        jobs = client.get("/ui/jobs")
        assert jobs.status_code == 503 and "Database unreachable" in jobs.text
    app.close()


def test_a_schema_behind_the_code_is_named_on_the_overview(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0008")
    engine.dispose()
    app = Conveyor(Settings(database_url=url))
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        page = client.get("/ui").text
    assert re.search(r"<b>Database schema:</b> the schema is at revision 0008[^<]*db upgrade", page)
    app.close()


def test_overview_counts_a_backlog_per_queue(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    for _ in range(3):
        app.enqueue("add", {"a": 1}, queue="parked")
    with api_for(app) as client:
        page = client.get("/ui").text
    row = re.search(r'<a href="/ui/jobs\?queue=parked">parked</a>.*?</tr>', page, re.S)
    assert row, page
    assert '<a href="/ui/jobs?queue=parked&amp;state=queued">3</a>' in row.group(0)
    assert "data-unserved>no worker</span>" in row.group(0)


def test_jobs_are_paged_newest_first_without_gaps(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    ids = [app.enqueue("add", {"a": i}).id for i in range(120)]
    seen: list[str] = []
    path = "/ui/jobs?type=add"
    with api_for(app) as client:
        for expected in (50, 50, 20):
            page = client.get(path).text
            rows = re.findall(r'<tr data-job="([0-9a-f-]+)">', page)
            assert len(rows) == expected
            seen += rows
            older = re.search(r'href="(/ui/jobs\?[^"]+)" rel="next"', page)
            if expected == 20:
                assert older is None
            else:
                assert older is not None
                path = older.group(1).replace("&amp;", "&")
    assert seen == list(reversed(ids))


def test_workers_page_fades_the_stopped_and_shows_weights(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    store, now = app.services.workers, app.client.clock.now()
    store.register("w-alive", host="h1", pid=11, queues={"critical": 6, "low": 1},
                   concurrency=20, now=now)  # fmt: skip
    store.register("w-gone", host="h2", pid=22, queues={"default": 1}, concurrency=5,
                   now=now - timedelta(minutes=5))  # fmt: skip
    store.stop("w-gone", now - timedelta(minutes=4))
    with api_for(app) as client:
        page = client.get("/ui/workers").text
    assert re.search(r'<tr class="alive" data-worker="w-alive">', page)
    assert re.search(r'<tr class="dead" data-worker="w-gone">', page)
    assert re.search(r'<span class="chip">critical <b>6</b></span>\s*<span class="chip">low', page)


def test_schedule_actions_name_what_is_missing(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    with api_for(app) as client:
        client.get("/ui/schedules")
        csrf = client.cookies["conveyor_csrf"]
        for verb in ("pause", "resume", "trigger"):
            response = client.post(f"/ui/schedules/{verb}", data={"csrf": csrf, "name": "nope"})
            assert response.status_code == 404 and "No such schedule" in response.text
        response = client.post("/ui/schedules/explode", data={"csrf": csrf, "name": "nope"})
        assert response.status_code == 404 and "No such action" in response.text


def test_bulk_actions_confirm_first_and_refuse_an_empty_filter(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    job_id = app.enqueue("add", {"a": 1}, queue="parked").id
    with api_for(app) as client:
        client.get("/ui/jobs")
        csrf = client.cookies["conveyor_csrf"]
        refused = client.post("/ui/jobs/bulk", data={"csrf": csrf, "action": "delete"})
        assert refused.status_code == 422 and "choose a filter first" in refused.text
        unknown = client.post("/ui/jobs/bulk", data={"csrf": csrf, "action": "explode"})
        assert unknown.status_code == 422
        form = {"csrf": csrf, "action": "cancel", "queue": "parked", "since": "1h"}
        confirm = client.post("/ui/jobs/bulk", data=form)
        assert confirm.status_code == 200
        assert "Cancel every job matching queue = parked" in confirm.text
        assert 'name="created_after"' in confirm.text and 'name="since"' not in confirm.text
        assert app.client.get(job_id).state.value == "queued"  # nothing done before confirming
        fields = dict(
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm.text)
        )
        done = client.post("/ui/jobs/bulk", data=fields, follow_redirects=False)
        assert done.status_code == 303 and "done=cancel&changed=1" in done.headers["location"]
        landed = client.get(done.headers["location"])
        assert "Canceled 1 job." in landed.text
    assert app.client.get(job_id).state.value == "canceled"
