"""How fast the dashboard's pages are over a big jobs table: server time of the jobs page
(first page, a filtered page, page 100) and of the overview, on PostgreSQL.

    python -m bench.ui_pages [rows=1000000] [url=postgresql+psycopg://root@127.0.0.1:5432/conveyor_ui_bench]

Seeds the table once (in SQL: time-ordered ids over the last 7 days, 90 % completed, the
rest failed, queued, canceled and running, 20 job types, 5 queues), then asks each page
through the real application in process and reports the median of its Server-Timing."""

from __future__ import annotations

import re
import statistics
import sys
import time

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from conveyor import Conveyor
from conveyor.api import create_app
from conveyor.core.settings import Settings
from conveyor.store import make_engine
from conveyor.store.schema import upgrade

SEED = """
INSERT INTO conveyor_jobs (id, type, queue, state, payload, attempt, uncharged, max_attempts,
                           created_at, updated_at, started_at, finished_at, cancel_requested)
SELECT
    (lpad(to_hex(ms), 12, '0') || '7' || lpad(to_hex((random() * 4095)::int), 3, '0')
        || '8' || substr(md5(g::text), 1, 15))::uuid,
    't' || (abs(hashtext(g::text)) % 20), 'q' || (abs(hashtext('q' || g)) % 5),
    CASE WHEN g % 100 < 90 THEN 'completed' WHEN g % 100 < 95 THEN 'failed'
         WHEN g % 100 < 98 THEN 'queued' WHEN g % 100 < 99 THEN 'canceled' ELSE 'running' END,
    jsonb_build_object('n', g, 'url', 'https://example.com/' || g),
    1, 0, 3,
    to_timestamp(ms / 1000.0), to_timestamp(ms / 1000.0),
    to_timestamp(ms / 1000.0 + 0.01),
    CASE WHEN g % 100 < 99 AND g % 100 >= 0 AND NOT (g % 100 BETWEEN 95 AND 97)
         THEN to_timestamp(ms / 1000.0 + 0.2) END,
    false
FROM (
    SELECT g, (extract(epoch FROM now()) * 1000)::bigint - (:rows - g) * (604800000 / :rows) AS ms
    FROM generate_series(1, :rows) AS g
) AS s
"""


def main(rows: int = 1_000_000, url: str = "") -> None:
    url = url or "postgresql+psycopg://root@127.0.0.1:5432/conveyor_ui_bench"
    base, _, name = url.rpartition("/")
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = make_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        have = conn.execute(text("SELECT count(*) FROM conveyor_jobs")).scalar_one()
        if have != rows or "--reseed" in sys.argv:
            print(f"seeding {rows:,} jobs ...", flush=True)
            started = time.perf_counter()
            conn.execute(text("TRUNCATE conveyor_jobs, conveyor_attempts"))
            conn.execute(text(SEED), {"rows": rows})
            print(f"  seeded in {time.perf_counter() - started:.0f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE conveyor_jobs"))
    engine.dispose()

    app = Conveyor(Settings(database_url=url))
    client = TestClient(create_app(app))
    failed_id = client.get("/jobs?state=failed&limit=1").json()["items"][0]["id"]
    pages = {
        "jobs, first page": "/ui/jobs",
        "jobs, state=failed type=t3": "/ui/jobs?state=failed&type=t3",
        "jobs, queue=q2 last 24h": "/ui/jobs?queue=q2&since=24h",
        "jobs, page 100": _page(client, "/ui/jobs", 100),
        "jobs, page 100 of state=failed": _page(client, "/ui/jobs?state=failed", 100),
        "jobs, type=none (no match: worst case)": "/ui/jobs?state=failed&type=none",
        "a job": f"/ui/jobs/{failed_id}",
        "overview": "/ui",
    }
    print(f"\n{rows:,} jobs on {url}: server time (Server-Timing), median of 7\n")
    for label, path in pages.items():
        times = [_server_ms(client, path) for _ in range(7)]
        print(f"  {label:<34} {statistics.median(times):7.1f} ms   (min {min(times):.1f})")
    app.close()


def _page(client: TestClient, path: str, n: int) -> str:
    """The path of page ``n`` of a listing, following its "Older" links."""
    for _ in range(n - 1):
        html = client.get(path).text
        found = re.search(r'href="(/ui/jobs\?[^"]*cursor=[^"]+)" rel="next"', html)
        if found is None:
            raise SystemExit(f"fewer than {n} pages at {path}")
        path = found.group(1).replace("&amp;", "&")
    return path


def _server_ms(client: TestClient, path: str) -> float:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return float(response.headers["server-timing"].split("dur=")[1])


if __name__ == "__main__":
    options = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg)
    main(int(options.get("rows", 1_000_000)), options.get("url", ""))
