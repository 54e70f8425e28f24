"""``--processes N``: keep N worker processes alive, restart the ones that die."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("conveyor.supervisor")

PR_SET_PDEATHSIG = 1
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class Supervisor:
    def __init__(self, child_argv: Sequence[str], processes: int) -> None:
        self.child_argv = list(child_argv)
        self.processes = processes
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.restarts = 0

    def _spawn(self, slot: int) -> None:
        child = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *self.child_argv], preexec_fn=die_with_parent
        )
        self.children[slot] = child
        log.info("started worker process %d (pid %d)", slot, child.pid)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        for slot in range(self.processes):
            self._spawn(slot)
        failures = dict.fromkeys(range(self.processes), 0)
        while True:
            alive = False
            for slot, child in list(self.children.items()):
                code = child.poll()
                if code is None:
                    alive = True
                    continue
                if self.stopping:
                    continue
                failures[slot] += 1
                delay = RESTART_BACKOFF_S[min(failures[slot], len(RESTART_BACKOFF_S)) - 1]
                log.warning("worker process %d exited with %s; restarting", slot, code)
                time.sleep(delay)
                self.restarts += 1
                self._spawn(slot)
                alive = True
            if self.stopping and not alive:
                return 0
            time.sleep(0.2)
