"""The web dashboard at /ui: served by the API process, no build step, no other server."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from conveyor.dashboard import actions  # noqa: F401  (its routes join the pages' router)
from conveyor.dashboard.pages import router
from conveyor.dashboard.web import STATIC_DIR


def mount_dashboard(api: FastAPI) -> None:
    """Serve the dashboard from ``api`` (which holds ``state.conveyor`` and ``state.access``)."""
    api.include_router(router)
    api.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="conveyor-ui-static")


__all__ = ["mount_dashboard"]
