"""Finding the user's app from ``--app module:attribute`` (or CONVEYOR_APP)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from conveyor.app import Conveyor


def load_app(spec: str | None) -> Conveyor:
    spec = spec or os.environ.get("CONVEYOR_APP")
    if not spec:
        raise click.UsageError("name your app with --app module:attribute (or CONVEYOR_APP)")
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.UsageError(f"--app {spec}: cannot import {module_name!r}: {exc}") from None
    app = getattr(module, attr or "app", None)
    if not isinstance(app, Conveyor):
        raise click.UsageError(
            f"--app {spec}: {module_name}.{attr or 'app'} is not a conveyor.Conveyor instance"
        )
    return app
