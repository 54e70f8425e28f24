"""The ASGI factory `conveyor api` runs: the app named by CONVEYOR_APP."""

from __future__ import annotations

import os

from fastapi import FastAPI

from conveyor.api.app import create_app
from conveyor.loading import load_app


def build() -> FastAPI:
    return create_app(load_app(os.environ.get("CONVEYOR_APP")))
