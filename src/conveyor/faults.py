"""Fault points for the fault-injection tests: a process started with ``_CONVEYOR_FAULT_POINT``
naming a point dies there (``os._exit(EXIT_STATUS)``), and no other process does.

The variable is outside the ``CONVEYOR_*`` settings namespace, and it arms only the process
that was started with it: it is taken out of the environment when this module is imported (a
program this process starts does not inherit it) and remembered with this process's id (a
forked child, such as a ``--processes N`` worker or an isolated job's process, does not fire).

Points:

- ``after_commit``: an enqueue without a caller's connection, after its transaction commits
  and before it dispatches (the lost dispatch maintenance must repair).
- ``after_fetch``: a Redis-dispatch worker, after it fetched ids from Redis and before it
  claims them (the deliveries ``XAUTOCLAIM`` must hand out again).
"""

from __future__ import annotations

import os

ENV = "_CONVEYOR_FAULT_POINT"
#: The exit status of a process that died at its fault point (EX_SOFTWARE).
EXIT_STATUS = 70


def _armed() -> tuple[str, int] | None:
    """(point, pid) if this process was started with ``ENV`` set; removes it from the
    environment so that nothing this process starts inherits it."""
    name = os.environ.pop(ENV, "")
    return (name, os.getpid()) if name else None


_ARMED = _armed()


def point(name: str) -> None:
    """Die here if this process was started with ``ENV`` naming ``name``."""
    if (name, os.getpid()) == _ARMED:
        os._exit(EXIT_STATUS)
