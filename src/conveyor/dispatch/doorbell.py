"""A doorbell for the workers of one SQLite database: a job made ready rings them at once, so
an idle worker need not poll the database every few milliseconds.

SQLite is one host's database, so every process that uses it (the API, workers, the
scheduler, ``conveyor up``'s two processes) can reach the others through the file system.
Each idle-waiting worker binds a Unix datagram socket in a directory named after the
database file (``doorbell_dir``); a hand-off (``Doorbell.push``, the ``Handoff`` port: after
an enqueue commits, a retry, a promotion, a hand-back) sends one datagram naming the queues
to every socket there. A socket nobody listens on any more is removed by the next ring. The
bell only ends a wait early: a ring that is lost (a full socket buffer, a process between
two waits) costs at most the worker's idle poll, which stays as the safety net.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

#: How long an idle worker waits for its bell before it claims anyway (the safety net for a
#: lost ring; everything that makes a job ready rings).
BELL_IDLE_S = 1.0
#: Most bytes of queue names a ring carries; beyond, it says "every queue" (``ALL``).
MAX_RING_BYTES = 2048
ALL = "*"


def doorbell_dir(database_path: str) -> Path | None:
    """The doorbell directory of a SQLite database file (None for an in-memory database).

    In the temporary directory, named by a hash of the file's absolute path: short enough for
    a socket's path (108 bytes at most) wherever the database lives, and the same for every
    process of the host."""
    if not database_path or database_path == ":memory:" or database_path.startswith("file::"):
        return None
    key = hashlib.sha256(os.path.abspath(database_path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"conveyor-bell-{key}"


class Doorbell:
    """The hand-off of database delivery on SQLite: rings every worker waiting on the same
    database. Never raises: a job is safe in the database whether or not anyone hears."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sock: socket.socket | None = None

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        if not items:
            return
        message = _ring_of(q for q, _ in items)
        try:
            entries = list(os.scandir(self.directory))
        except OSError:  # nobody has ever waited on this database
            return
        for entry in entries:
            if entry.name.endswith(".sock"):
                self._ring(entry.path, message)

    def _ring(self, path: str, message: bytes) -> None:
        sock = self._socket()
        try:
            sock.sendto(message, path)
        except (ConnectionRefusedError, FileNotFoundError):  # its worker is gone
            with contextlib.suppress(OSError):
                os.unlink(path)
        except OSError:  # a full buffer: it has been rung already (its poll covers the rest)
            pass

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _ring_of(queues: Iterable[str]) -> bytes:
    message = "\n".join(sorted(set(queues))).encode()
    return message if len(message) <= MAX_RING_BYTES else ALL.encode()


class DoorbellListener:
    """Where an idle worker waits for its doorbell (the ``Waker`` of SQLite): ``listen``
    before each claim, ``wait`` after a claim that found nothing, ``close`` at the end."""

    def __init__(
        self,
        directory: Path,
        queues: Iterable[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.queues = set(queues)
        #: This worker's queues named by rings read since the source last looked.
        self.named: set[str] = set()
        self.clock = clock
        self._sock: socket.socket | None = None
        self._broken = False  # binding failed once: poll, do not try again each time
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"

    @property
    def idle_s(self) -> float | None:
        """How long an idle wait may last: BELL_IDLE_S while the bell is up; None (the
        worker's usual poll) when it cannot be."""
        return BELL_IDLE_S if self._open() is not None else None

    def listen(self) -> None:
        """Read rings that came while the worker was busy: the claim that follows covers
        their jobs; the queues they named are kept in ``named`` for the source."""
        sock = self._open()
        if sock is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            while message := sock.recv(MAX_RING_BYTES + 1):
                self._note(message.decode(errors="replace"))

    def _note(self, message: str) -> bool:
        """Keep the queues a ring names; whether it named any of this worker's."""
        named = set(message.split("\n"))
        mine = set(self.queues) if ALL in named else named & self.queues
        self.named |= mine
        return bool(mine)

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s``; True when a ring named one of this worker's queues."""
        sock = self._open()
        if sock is None:
            time.sleep(timeout_s)
            return False
        deadline = self.clock() + timeout_s
        while (left := deadline - self.clock()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable:
                return False
            try:
                message = sock.recv(MAX_RING_BYTES + 1).decode(errors="replace")
            except OSError:
                continue
            if self._note(message):
                return True
        return False

    def _open(self) -> socket.socket | None:
        if self._sock is not None or self._broken:
            return self._sock
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(str(self.path))
        except OSError:  # no bell here (a read-only temporary directory, say): poll
            self._broken = True
            return None
        self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
