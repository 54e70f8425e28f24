"""Dependencies: the Conveyor app behind a request, authentication, content types."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from conveyor.api.errors import ApiError
from conveyor.app import Conveyor
from conveyor.client import Client

# The dependencies are coroutines although they never wait: FastAPI runs a plain function
# dependency in a worker thread, a hand-off per dependency per request.


async def get_conveyor(request: Request) -> Conveyor:
    conveyor: Conveyor = request.app.state.conveyor
    return conveyor


async def get_client(request: Request) -> Client:
    return (await get_conveyor(request)).client


ClientDep = Annotated[Client, Depends(get_client)]
ConveyorDep = Annotated[Conveyor, Depends(get_conveyor)]


async def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media or 'no content type'}",
        )
