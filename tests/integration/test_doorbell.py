"""SQLite's doorbell: whatever makes a job ready rings the idle workers of the same database
file, so they wait a long idle poll instead of polling the database every 50 ms."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from conveyor.core.shares import Shares
from conveyor.dispatch.doorbell import BELL_IDLE_S, Doorbell, DoorbellListener, doorbell_dir
from tests.conftest import Backend


def test_a_ring_wakes_a_waiting_listener_of_its_queues_only(tmp_path: Path) -> None:
    bell = doorbell_dir(str(tmp_path / "c.db"))
    assert bell is not None and len(str(bell)) < 60  # a socket path has at most 108 bytes
    assert doorbell_dir(":memory:") is None
    listener = DoorbellListener(bell, ["emails"])
    listener.listen()
    ring = Doorbell(bell)
    try:
        threading.Timer(0.2, ring.push, args=([("reports", "x")],)).start()
        started = time.monotonic()
        assert listener.wait(0.8) is False  # another queue's ring does not wake it
        assert time.monotonic() - started >= 0.75
        threading.Timer(0.2, ring.push, args=([("emails", "y")],)).start()
        started = time.monotonic()
        assert listener.wait(5) is True
        assert time.monotonic() - started < 1.0
    finally:
        listener.close()
        ring.close()
    assert not listener.path.exists()


def test_a_dead_workers_socket_is_swept_by_the_next_ring(tmp_path: Path) -> None:
    bell = doorbell_dir(str(tmp_path / "c.db"))
    assert bell is not None
    gone = DoorbellListener(bell, ["q"])
    gone.listen()
    assert gone._sock is not None
    gone._sock.close()  # killed: its socket file stays behind
    assert gone.path.exists()
    Doorbell(bell).push([("q", "x")])
    assert not gone.path.exists()


def test_an_enqueue_wakes_an_idle_worker_at_once(sqlite_backend: Backend) -> None:
    app = sqlite_backend.app()
    services = app.services
    source = services.source("w-bell", ["default"], 30.0)
    assert source.waker is not None and source.waker.idle_s == BELL_IDLE_S  # type: ignore[attr-defined]
    shares = Shares({"default": 1})
    assert source.claim(shares, 1, 0.0) == []  # binds the bell; nothing queued yet
    woke: list[float] = []

    def idle_claim() -> None:
        claimed = source.claim(shares, 1, 0.05)
        while not claimed:
            claimed = source.claim(shares, 1, 0.05)
        woke.append(time.monotonic())

    waiter = threading.Thread(target=idle_claim)
    waiter.start()
    time.sleep(0.3)  # the claim found nothing and waits on the bell (for up to BELL_IDLE_S)
    enqueued = time.monotonic()
    app.enqueue("add", {"a": 1})
    waiter.join(5)
    assert woke and woke[0] - enqueued < BELL_IDLE_S / 3, woke[0] - enqueued
    source.release()
    assert os.listdir(doorbell_dir(services.engine.url.database or "")) == []
