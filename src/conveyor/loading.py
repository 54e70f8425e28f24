"""Finding the user's app from ``--app module:attribute`` (or CONVEYOR_APP)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from conveyor.app import Conveyor

#: Said wherever an app is asked for: the one every installation has.
DEMO_HINT = " (to try Conveyor, the demo app is conveyor.demo:app)"


def load_app(spec: str | None) -> Conveyor:
    from conveyor.app import Conveyor  # here, not above: the command line imports this first

    spec = spec or os.environ.get("CONVEYOR_APP")
    if not spec:
        raise click.UsageError(
            f"name your app with --app module:attribute (or CONVEYOR_APP){DEMO_HINT}"
        )
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(f"--app {spec}: cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attr):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, Conveyor))
        hint = f"; its Conveyor apps: {', '.join(found)}" if found else ""
        raise click.UsageError(f"--app {spec}: {module_name} has no attribute {attr!r}{hint}")
    app = getattr(module, attr)
    if not isinstance(app, Conveyor):
        raise click.UsageError(
            f"--app {spec}: {module_name}.{attr} is not a conveyor.Conveyor instance"
        )
    return app
