"""Authentication, checked before anything reads the request."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.api.asgi import send_error
from conveyor.core.access import SAFE_METHODS, SESSION_COOKIE, Access, Role

PUBLIC_PATHS = frozenset({"/healthz"})
#: The dashboard checks its own session (and shows a login form instead of a 401).
DASHBOARD_PREFIX = "/ui"


class TokenAuth:
    """With tokens configured, every route but /healthz needs ``Authorization: Bearer``;
    a read-only token only reads. A dashboard session cookie also authorizes reads (the
    browser's EventSource cannot send a header), never a change: SameSite=Strict and safe
    methods only, so another site cannot act through it.

    A middleware rather than a dependency, so that no body is parsed (and no parse error
    answered) for a caller who has not shown a token.
    """

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.access.required or _public(_path(scope)):
            await self.app(scope, receive, send)
            return
        header = cookie = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
            elif name == b"cookie":
                cookie = value.decode("latin-1")
        safe = scope.get("method", "GET") in SAFE_METHODS
        role = self.access.bearer_role(header) if header else None
        if role is None and not header and safe:
            role = _session_role(self.access, cookie)
        if role is Role.ADMIN or (role is Role.READ and safe):
            await self.app(scope, receive, send)
            return
        if role is Role.READ:
            await send_error(send, 403, "forbidden", "this token may only read")
            return
        message = "invalid bearer token" if header else "missing bearer token"
        challenge = [(b"www-authenticate", b'Bearer realm="conveyor"')]
        await send_error(send, 401, "unauthorized", message, headers=challenge)


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path == DASHBOARD_PREFIX or path.startswith("/ui/")


def _session_role(access: Access, header: str) -> Role | None:
    if SESSION_COOKIE not in header:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header)
    except Exception:  # a malformed Cookie header authorizes nothing
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return None if morsel is None else access.session_role(morsel.value, time.time())


def _path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
