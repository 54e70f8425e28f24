"""Screenshots of every dashboard page, light and dark, into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py

Starts `conveyor up --demo` (the embedded SQLite default) in a temporary folder, gives it a
minute of varied work (the demo's jobs, failures, a schedule, a queue nobody serves), then
drives Debian's Chromium through Playwright over each page."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    folder = tempfile.mkdtemp(prefix="conveyor-shots-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    up = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "up", "--demo", "--port", str(port)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(f"{base}/healthz")
        with httpx.Client(base_url=base) as http:
            for i in range(60):
                http.post("/jobs", json={"type": "call_flaky_api", "payload": {"succeed_on": i % 4 + 1}})
            for store in range(3):
                http.post("/jobs", json={"type": "analyze_store", "payload": {"store_id": store}})
            for _ in range(25):
                http.post("/jobs", json={"type": "call_flaky_api", "payload": {"succeed_on": 1},
                                         "queue": "reports"})  # fmt: skip
            http.post("/jobs", json={"type": "call_flaky_api", "payload": {"succeed_on": 9}})
            time.sleep(75)  # two minutes on the charts
            slow = http.get("/jobs", params={"type": "slow_report"}).json()["items"][0]["id"]
            flaky = http.get("/jobs", params={"type": "call_flaky_api", "state": "completed"})
            retried = next(j["id"] for j in flaky.json()["items"] if j["attempt"] > 2)
        OUT.mkdir(parents=True, exist_ok=True)
        pages = {
            "overview": "/ui",
            "jobs": "/ui/jobs",
            "job-running": f"/ui/jobs/{slow}",
            "job-retried": f"/ui/jobs/{retried}",
            "workers": "/ui/workers",
            "schedules": "/ui/schedules",
        }
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    color_scheme=scheme, viewport={"width": 1280, "height": 800}
                )
                page = context.new_page()
                for name, path in pages.items():
                    page.goto(base + path)
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(OUT / f"{name}-{scheme}.png"), full_page=True)
                context.close()
            phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
            page = phone.new_page()
            page.goto(f"{base}/ui/jobs")
            page.screenshot(path=str(OUT / "jobs-phone-dark.png"), full_page=False)
            browser.close()
        print(f"screenshots in {OUT}")
    finally:
        up.terminate()
        up.wait(40)
        shutil.rmtree(folder, ignore_errors=True)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


if __name__ == "__main__":
    main()
