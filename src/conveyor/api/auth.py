"""Bearer-token authentication, checked before anything reads the request."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor.api.asgi import send_error

PUBLIC_PATHS = frozenset({"/healthz"})


def token_ok(tokens: frozenset[str], header: str) -> bool:
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    matched = False
    for token in tokens:  # compare with every token, each in constant time
        matched |= hmac.compare_digest(token.encode(), given.strip().encode())
    return matched


class TokenAuth:
    """With CONVEYOR_API_TOKENS set, every route but /healthz needs ``Authorization: Bearer``.

    A middleware rather than a dependency, so that no body is parsed (and no parse error
    answered) for a caller who has not shown a token.
    """

    def __init__(self, app: ASGIApp, tokens: frozenset[str]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or _path(scope) in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                header = value.decode("latin-1")
        if token_ok(self.tokens, header):
            await self.app(scope, receive, send)
            return
        message = "invalid bearer token" if header else "missing bearer token"
        challenge = [(b"www-authenticate", b'Bearer realm="conveyor"')]
        await send_error(send, 401, "unauthorized", message, headers=challenge)


def _path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
