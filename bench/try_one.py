"""One measurement, printed as JSON: ``python -m bench.try_one SYSTEM WORKLOAD key=value...``,
e.g. ``conveyor w1 jobs=10000 cap_s=30`` or ``rq defaults jobs=500 kind=async``."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench.systems import available
from bench.workloads import measure


def value(text: str) -> int | float | str:
    """A parameter as the workload takes it: a number where it reads as one, else the text."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def main() -> None:
    name, workload, *pairs = sys.argv[1:]
    params = {k: value(v) for k, v in (p.split("=", 1) for p in pairs)}
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(available()[name], workload, Path(tmp), **params)))


if __name__ == "__main__":
    main()
