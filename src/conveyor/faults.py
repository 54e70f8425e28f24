"""Fault points for the fault-injection tests, off unless CONVEYOR_FAULT names one.

``CONVEYOR_FAULT=after_commit`` makes an enqueuing process die (os._exit) right after its
transaction commits and before it dispatches: the crash the reconciler must repair.
"""

from __future__ import annotations

import os

ENV = "CONVEYOR_FAULT"


def point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os._exit(70)
