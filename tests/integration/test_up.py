"""`conveyor up --demo` on a fresh directory: embedded defaults, no servers configured."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_demo_runs_everything_on_sqlite(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = str(ROOT)
    log = open(tmp_path / "up.log", "w+")  # noqa: SIM115 - read back below
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "up", "--demo", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ok(f"{base}/healthz"), timeout=30, what="the API")
        assert (tmp_path / "conveyor.db").exists()  # the embedded default, migrated
        printed = (tmp_path / "up.log").read_text()
        assert printed.splitlines()[0] == f"Conveyor is up — dashboard: {base}/ui"
        assert f"{base}/docs" in printed and "/events" in printed
        page = httpx.get(f"{base}/ui/jobs")
        assert page.status_code == 200 and "analyze_store" in page.text
        jobs = httpx.get(f"{base}/jobs").json()["items"]
        assert {j["type"] for j in jobs} == {"analyze_store", "call_flaky_api", "slow_report"}
        flaky = next(j for j in jobs if j["type"] == "call_flaky_api")
        done = wait_for(
            lambda: (
                (j := httpx.get(f"{base}/jobs/{flaky['id']}").json())["state"] == "completed" and j
            ),
            timeout=40,
            what="the flaky demo job to succeed",
        )
        assert [a["outcome"] for a in done["attempts"]] == ["error", "error", "completed"]
        slow = next(j for j in jobs if j["type"] == "slow_report")
        wait_for(
            lambda: httpx.get(f"{base}/jobs/{slow['id']}").json()["state"] == "running",
            timeout=30,
            what="the slow job to run",
        )
        httpx.post(f"{base}/jobs/{slow['id']}/cancel")
        wait_for(
            lambda: httpx.get(f"{base}/jobs/{slow['id']}").json()["state"] == "canceled",
            timeout=15,
            what="the slow job to stop",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(40)
        log.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
