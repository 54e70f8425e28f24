"""python -m bench.try_one SYSTEM WORKLOAD key=value...: one measurement, printed as JSON."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench.systems import available
from bench.workloads import measure


def main() -> None:
    name, workload, *pairs = sys.argv[1:]
    params = {k: float(v) if "." in v else int(v) for k, v in (p.split("=") for p in pairs)}
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(available()[name], workload, Path(tmp), **params)))


if __name__ == "__main__":
    main()
