"""create_app(): the ASGI application for a Conveyor app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from conveyor.api import errors
from conveyor.api.auth import TokenAuth
from conveyor.api.batcher import EnqueueBatcher
from conveyor.api.hub import EventHub
from conveyor.api.limits import BodyLimit
from conveyor.api.metrics import EnqueuedCounts, SharedViews
from conveyor.api.routes import jobs, schedules, system
from conveyor.app import Conveyor
from conveyor.core.access import Access
from conveyor.core.settings import api_tokens, readonly_tokens
from conveyor.dashboard import mount_dashboard

#: Swagger UI's files, as fastapi-offline ships them (a current Swagger UI: OpenAPI 3.1).
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"


def create_app(conveyor: Conveyor) -> FastAPI:
    """The HTTP API over ``conveyor``; mount it in your own FastAPI service if you like."""
    settings = conveyor.settings
    api = FastAPI(
        title="Conveyor",
        version="0.1.0",
        description="Enqueue jobs, follow them, control them.",
        docs_url=None,  # served below, behind the same authentication as everything else
        openapi_url=None,
        lifespan=_lifespan,
    )
    api.state.conveyor = conveyor
    api.state.access = Access(api_tokens(settings), readonly_tokens(settings))
    api.state.enqueued = EnqueuedCounts(conveyor.services.stats.add)
    api.state.views = SharedViews()
    changes = conveyor.services.changes()  # None: streams poll (SQLite without Redis)
    api.state.hub = EventHub(changes) if changes is not None else None
    api.state.batcher = EnqueueBatcher(conveyor.client)
    errors.install(api)
    api.include_router(jobs.router)
    api.include_router(system.router)
    api.include_router(schedules.router)
    api.include_router(system.public)
    api.include_router(_docs(api))
    api.mount("/docs/assets", StaticFiles(directory=SWAGGER_UI), name="swagger-ui")
    mount_dashboard(api)
    api.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    api.add_middleware(TokenAuth, access=api.state.access)  # outermost: before any reading
    return api


@asynccontextmanager
async def _lifespan(api: FastAPI) -> AsyncIterator[None]:
    """At shutdown, add the enqueue counts not yet written to the database's counters (a
    mounted app's lifespan does not run: its last second of counts may be lost)."""
    yield
    api.state.enqueued.flush()


def _docs(api: FastAPI) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return api.openapi()

    @router.get("/docs", response_class=HTMLResponse)
    def docs(request: Request) -> HTMLResponse:
        assets = f"{request.scope.get('root_path', '')}/docs/assets"
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title="Conveyor API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",  # from the package: no CDN
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
        )

    return router
