"""Who may do what: bearer tokens, read-only tokens, and the dashboard's signed sessions.

One rule for the API and the dashboard. With no token configured, everyone may do
everything (the embedded default). A read-only token may read (GET and HEAD on the API, the
dashboard without its actions); an API token may do everything. A dashboard session is a
cookie that names the kind of token that opened it, by a fingerprint of that token, signed
with a key derived from every configured token: every API process behind a load balancer
verifies it without shared state, and removing a token from the configuration ends the
sessions it opened.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

#: How long a dashboard session lasts after logging in.
SESSION_S = 12 * 3600
SESSION_COOKIE = "conveyor_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(StrEnum):
    READ = "read"
    ADMIN = "admin"


def _fingerprint(token: str) -> str:
    return hashlib.sha256(b"conveyor-token\0" + token.encode()).hexdigest()[:32]


def _matches(tokens: frozenset[str], given: str) -> bool:
    matched = False
    for token in tokens:  # compare with every token, each in constant time
        matched |= hmac.compare_digest(token.encode(), given.encode())
    return matched


@dataclass(frozen=True, slots=True)
class Access:
    tokens: frozenset[str] = frozenset()
    readonly: frozenset[str] = frozenset()

    @property
    def required(self) -> bool:
        """Whether callers must show a token (any is configured)."""
        return bool(self.tokens or self.readonly)

    def role_of(self, token: str) -> Role | None:
        """The role a presented token grants, or None for an unknown one."""
        token = token.strip()
        if not token:
            return None
        if _matches(self.tokens, token):
            return Role.ADMIN
        if _matches(self.readonly, token):
            return Role.READ
        return None

    def bearer_role(self, header: str) -> Role | None:
        """The role of an ``Authorization: Bearer <token>`` header's token."""
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.role_of(given)

    # -- sessions ----------------------------------------------------------------------------

    def open_session(self, token: str, now_s: float) -> str | None:
        """A session cookie's value for a valid token (None for an unknown one)."""
        role = self.role_of(token)
        if role is None:
            return None
        body = f"{int(now_s) + SESSION_S}.{role.value}.{_fingerprint(token.strip())}"
        return f"{body}.{self._sign(body)}"

    def session_role(self, value: str, now_s: float) -> Role | None:
        """The role a session cookie grants, if it is genuine, current, and its token is
        still configured with that role."""
        body, _, signature = value.rpartition(".")
        if not body or not hmac.compare_digest(self._sign(body), signature):
            return None
        expires, role, fingerprint = (body.split(".") + ["", "", ""])[:3]
        if not expires.isdigit() or int(expires) < now_s:
            return None
        kept = self.tokens if role == Role.ADMIN.value else self.readonly
        if role not in (Role.ADMIN.value, Role.READ.value) or fingerprint not in {
            _fingerprint(t) for t in kept
        }:
            return None
        return Role(role)

    def _sign(self, body: str) -> str:
        key = hashlib.sha256(
            b"conveyor-session\0"
            + b"\0".join(t.encode() for t in sorted(self.tokens))
            + b"\0\0"
            + b"\0".join(t.encode() for t in sorted(self.readonly))
        ).digest()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
