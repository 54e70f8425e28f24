"""A job that reports the state of the worker process running it: what the process imported
and how its garbage collector is set (tests/integration/test_startup.py)."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from conveyor import Conveyor

app = Conveyor()


@app.job
def report() -> None:
    state = {
        "modules": sorted(sys.modules),
        "gen0_threshold": gc.get_threshold()[0],
        "frozen": gc.get_freeze_count(),
    }
    marks = Path(os.environ["CONVEYOR_TEST_MARKS"])
    partial = marks / f"partial-{os.getpid()}.tmp"  # renamed whole: never read half written
    partial.write_text(json.dumps(state))
    os.replace(partial, marks / f"startup-{os.getpid()}.json")
