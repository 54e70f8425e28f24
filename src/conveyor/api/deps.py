"""Dependencies: the Conveyor app behind a request, authentication, content types."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from conveyor.api.errors import ApiError
from conveyor.app import Conveyor
from conveyor.client import Client


def get_conveyor(request: Request) -> Conveyor:
    conveyor: Conveyor = request.app.state.conveyor
    return conveyor


def get_client(request: Request) -> Client:
    return get_conveyor(request).client


ClientDep = Annotated[Client, Depends(get_client)]
ConveyorDep = Annotated[Conveyor, Depends(get_conveyor)]


def require_token(request: Request) -> None:
    """With CONVEYOR_API_TOKENS set, a valid ``Authorization: Bearer`` header is required."""
    tokens: frozenset[str] = request.app.state.tokens
    if not tokens:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "unauthorized", "missing bearer token")
    matched = False
    for token in tokens:  # compare with every token, in constant time each
        matched |= hmac.compare_digest(token.encode(), given.strip().encode())
    if not matched:
        raise ApiError(401, "unauthorized", "invalid bearer token")


def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media or 'no content type'}",
        )
