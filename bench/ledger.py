"""The execution ledger every benchmark job writes: one fixed-width line per run.

Job side: ``mark(t_enq, t_start)`` appends ``t_enq t_start t_end`` (wall-clock seconds) to the
file named by ``BENCH_LEDGER`` with one O_APPEND write, so any number of processes (forked
children included) can share it. It costs a few microseconds, the same for every system.

Harness side: ``Ledger`` counts lines by file size and parses them when a run ends.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

LINE = 54  # three %17.6f fields, two spaces, a newline
_fd: int | None = None
_pid: int | None = None


def mark(t_enq: float, t_start: float) -> None:
    global _fd, _pid
    pid = os.getpid()
    if _fd is None or _pid != pid:
        _fd = os.open(os.environ["BENCH_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _pid = pid
    os.write(_fd, b"%17.6f %17.6f %17.6f\n" % (t_enq, t_start, time.time()))


@dataclass(frozen=True)
class Entry:
    t_enq: float
    t_start: float
    t_end: float


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")

    def count(self) -> int:
        try:
            return self.path.stat().st_size // LINE
        except FileNotFoundError:
            return 0

    def entries(self) -> list[Entry]:
        out = []
        for line in self.path.read_bytes().splitlines():
            a, b, c = line.split()
            out.append(Entry(float(a), float(b), float(c)))
        return out

    def reset(self) -> None:
        self.path.write_bytes(b"")
