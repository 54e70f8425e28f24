"""The fault-point switch (conveyor/faults.py) arms only the process started with it."""

from __future__ import annotations

import os
import subprocess
import sys

from conveyor import faults
from tests.conftest import ROOT

# Run with the switch on: starts a program and forks a child, both of which reach the point
# and must live; then reaches the point itself.
PROBE = """
import os, subprocess, sys
from conveyor import faults
assert faults.ENV not in os.environ, "still in the environment children inherit"
program = subprocess.run(
    [sys.executable, "-c", "from conveyor import faults; faults.point('after_commit')"]
)
child = os.fork()
if child == 0:
    faults.point("after_commit")
    os._exit(0)
forked = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
faults.point("another_point")
print(program.returncode, forked, flush=True)
faults.point("after_commit")
print("survived its own fault point", flush=True)
"""


def _probe(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != faults.ENV}
    base["PYTHONPATH"] = str(ROOT) + os.pathsep + base.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_process_started_with_the_switch_dies_there_and_no_other() -> None:
    armed = _probe(**{faults.ENV: "after_commit"})
    assert (armed.returncode, armed.stdout) == (faults.EXIT_STATUS, "0 0\n"), armed.stderr


def test_the_old_settings_name_arms_nothing() -> None:
    old = _probe(CONVEYOR_FAULT="after_commit")
    assert (old.returncode, old.stdout) == (0, "0 0\nsurvived its own fault point\n"), old.stderr
