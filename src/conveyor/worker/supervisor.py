"""``--processes N``: keep N worker processes alive, restart the ones that die.

Children are forked from the supervisor after it has imported the app and everything a worker
needs and migrated the schema, so a child starts serving in milliseconds instead of importing
for half a second, and shares the parent's pages until it writes them. The supervisor itself
opens no connection and starts no thread: a fork copies only the calling thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

log = logging.getLogger("conveyor.supervisor")

PR_SET_PDEATHSIG = 1
#: The exit status of a worker process that stopped to be replaced (EX_TEMPFAIL).
EXIT_REPLACE = 75
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def exit_for_restart(reason: str) -> NoReturn:
    """A supervised child that cannot make progress exits; its supervisor starts a new one.
    ``os._exit``: threads stuck in handlers would hold a normal exit forever."""
    log.warning("worker process %d exits to be replaced: %s", os.getpid(), reason)
    _flush()
    os._exit(EXIT_REPLACE)


def reexec(reason: str) -> NoReturn:
    """A lone worker process that cannot make progress becomes a fresh one (same pid, same
    arguments): exec ends every thread, stuck ones included."""
    log.warning("worker process %d restarts itself: %s", os.getpid(), reason)
    _flush()
    os.execv(sys.executable, [sys.executable, "-m", "conveyor", *sys.argv[1:]])


def exit_now(code: int = 0) -> NoReturn:
    """Exit without joining threads (a handler thread that never returns would hold a normal
    exit forever)."""
    _flush()
    os._exit(code)


def _flush() -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()


class Supervisor:
    """Fork ``processes`` children that each call ``target``; restart those that exit."""

    def __init__(self, target: Callable[[], None], processes: int) -> None:
        self.target = target
        self.processes = processes
        self.children: dict[int, int] = {}  # slot -> pid, while it runs
        self.stopping = False
        self.signals = 0  # stop signals received (passed on to every child)
        self.restarts = 0

    def _spawn(self, slot: int) -> None:
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        # A stop signal arriving mid-fork waits until the child has the default handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, measured by the process tests
            os._exit(self._child(parent))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.children[slot] = pid
        log.info("started worker process %d (pid %d)", slot, pid)

    def _child(self, parent: int) -> int:
        code = 1
        try:
            for signum in _STOP_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            # A process group of its own: a Ctrl-C at the terminal reaches the supervisor
            # alone, which passes it on once (the terminal's and ours would make two: a
            # second stop hands running jobs back at once).
            os.setpgid(0, 0)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            die_with_parent()
            if os.getppid() != parent:  # the supervisor died before prctl took effect
                return 1
            self.target()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("worker process failed")
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        return code

    def _exited(self, pid: int) -> int | None:
        """The child's exit code once it has ended (reaped), else None."""
        done, status = os.waitpid(pid, os.WNOHANG)
        return None if done == 0 else os.waitstatus_to_exitcode(status)

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self.signals += 1
        for pid in self.children.values():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        for signum in _STOP_SIGNALS:
            signal.signal(signum, self._forward)
        for slot in range(self.processes):
            self._spawn(slot)
        failures = dict.fromkeys(range(self.processes), 0)
        said = 0
        while self.children:
            if self.signals > said:  # said here, not in the signal handler
                said = self.signals
                self._say_stopping(said)
            for slot, pid in list(self.children.items()):
                code = self._exited(pid)
                if code is None:
                    continue
                del self.children[slot]
                if self.stopping:
                    continue
                failures[slot] += 1
                delay = RESTART_BACKOFF_S[min(failures[slot], len(RESTART_BACKOFF_S)) - 1]
                log.warning("worker process %d exited with %s; restarting", slot, code)
                time.sleep(delay)
                if self.stopping:
                    continue
                self.restarts += 1
                self._spawn(slot)
            time.sleep(0.2)
        return 0

    def _say_stopping(self, signals: int) -> None:
        if signals == 1:
            log.info(
                "stopping %d worker process(es): each waits up to its grace period for its "
                "running jobs; Ctrl-C again (or a second SIGTERM) to hand them back now",
                len(self.children),
            )
        else:
            log.warning("stopping now: the worker processes hand their running jobs back")
