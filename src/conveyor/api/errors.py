"""Every error as JSON ``{"error": {"code", "message", "details"}}``, never a stack trace."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.core import errors
from conveyor.core.schedule import InvalidSchedule
from conveyor.core.storable import clean_text

log = logging.getLogger("conveyor.api")

RETRY_AFTER_S = "5"

STATUS: dict[type[errors.ConveyorError], int] = {
    errors.JobNotFound: 404,
    errors.IllegalTransition: 409,
    errors.PayloadTooLarge: 413,
    errors.UnknownJobType: 422,
    errors.InvalidPayload: 422,
    errors.IdempotencyConflict: 422,
    errors.InvalidDuration: 422,
    errors.DatabaseUnavailable: 503,
    errors.ConfigurationError: 500,
    errors.ScheduleNotFound: 404,
    errors.ScheduleConflict: 409,
    InvalidSchedule: 422,
}


class ApiError(Exception):
    """An HTTP error with our code and message."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    try:
        return JSONResponse(body, status_code=status, headers=headers)
    except UnicodeEncodeError:  # it quotes a lone surrogate from the request
        return JSONResponse(_encodable(body), status_code=status, headers=headers)


def _encodable(value: Any) -> Any:
    """``value`` with every string made UTF-8 encodable (lone surrogates escaped)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def _status_of(exc: errors.ConveyorError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 422


async def _conveyor_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ConveyorError)
    status = _status_of(exc)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    if status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": 'Bearer realm="conveyor"'} if exc.status == 401 else None
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        problems.append(
            {"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type")}
        )
    fields = "; ".join(f"{p['field'] or '(body)'}: {p['message']}" for p in problems)
    return error_response(
        422, "validation_error", f"invalid request: {fields}", {"errors": problems}
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "body_too_large"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(exc.status_code, code, str(exc.detail), headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method served at this path (Starlette names only the first matching route's)."""
    templates = getattr(request.app.state, "path_methods", None)
    if templates is None:
        templates = []
        for path, operations in request.app.openapi().get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")
            templates.append((path.count("{"), pattern, {m.upper() for m in operations}))
        request.app.state.path_methods = templates
    matches = [(params, verbs) for params, p, verbs in templates if p.match(request.url.path)]
    fewest = min((params for params, _ in matches), default=0)  # /jobs/batch, not /jobs/{id}
    return sorted({v for params, verbs in matches if params == fewest for v in verbs})


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "an internal error occurred; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ConveyorError, _conveyor_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
