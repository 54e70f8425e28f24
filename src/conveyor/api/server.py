"""The ASGI factory `conveyor api` runs: the app named by CONVEYOR_APP."""

from __future__ import annotations

import os

from fastapi import FastAPI

from conveyor.api.app import create_app
from conveyor.core.gctune import tune_gc
from conveyor.loading import load_app


def build() -> FastAPI:
    app = create_app(load_app(os.environ.get("CONVEYOR_APP")))
    tune_gc()
    return app
