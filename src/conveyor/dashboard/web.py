"""What every dashboard page shares: templates, who is looking, CSRF, security headers.

Pages are rendered on the server (Jinja2, autoescaped: every value is text, never markup);
a small script (static/ui.js) refreshes parts of them and follows a job's event stream.
Links are built from the request's root path, so the dashboard works mounted under any
prefix of another application.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from conveyor.app import Conveyor
from conveyor.core.access import SESSION_COOKIE, Access, Role
from conveyor.dashboard import formats

STATIC_DIR = Path(__file__).parent / "static"
CSRF_COOKIE = "conveyor_csrf"
CSRF_FIELD = "csrf"
#: No inline script or style anywhere: scripts and styles come from /ui/static only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

templates = Environment(
    loader=PackageLoader("conveyor.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates ship with the package: no stat per render
)
templates.filters.update(formats.FILTERS)


class Redirect(Exception):
    """Raised by a page to answer with a redirect (to the login form, say)."""

    def __init__(self, location: str) -> None:
        self.location = location


class Refused(Exception):
    """An action the viewer may not take, or a form without its CSRF token: a 403 page."""

    def __init__(self, message: str) -> None:
        self.message = message


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking, and what the page needs to build its links and forms."""

    root: str  # the application's root path: "" or "/admin/jobs"
    role: Role
    readonly: bool  # actions hidden and refused
    login_required: bool  # whether a logout button makes sense
    csrf: str

    @property
    def ui(self) -> str:
        return f"{self.root}/ui"

    @property
    def may_act(self) -> bool:
        return not self.readonly


def access_of(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


def conveyor_of(request: Request) -> Conveyor:
    conveyor: Conveyor = request.app.state.conveyor
    return conveyor


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def viewer(request: Request) -> Viewer:
    """The viewer of a page; a redirect to the login form when a session is needed."""
    access = access_of(request)
    root = root_of(request)
    role = Role.ADMIN
    if access.required:
        found = access.session_role(request.cookies.get(SESSION_COOKIE, ""), time.time())
        if found is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise Redirect(f"{root}/ui/login?{urlencode({'next': here})}")
        role = found
    settings = conveyor_of(request).settings
    readonly = settings.ui_readonly or role is Role.READ
    return Viewer(root, role, readonly, access.required, csrf_for(request))


def csrf_for(request: Request) -> str:
    """The browser's CSRF token, or a new one (set as a cookie with the page)."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if 32 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum():
        return value
    return secrets.token_urlsafe(32)


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's fields (URL-encoded; the first value of each)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def check_post(request: Request, form: dict[str, str], *, action: bool = True) -> Viewer:
    """A state-changing form: it must carry the CSRF token its page was given (the cookie's
    twin: another site can neither read the cookie nor send it, SameSite=Strict), come from
    this origin when the browser says where it comes from, and ``action`` needs a viewer who
    may act."""
    given = form.get(CSRF_FIELD, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise Refused("this form has expired or did not come from this dashboard; reload the page")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(f"a form from {origin} may not act here")
    if not action:
        return Viewer(root_of(request), Role.ADMIN, True, access_of(request).required, cookie)
    who = viewer(request)
    if who.readonly:
        raise Refused("this dashboard is read-only for you")
    return who


def render(
    request: Request, name: str, who: Viewer, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page (or, with ``?fragment=1``, only its live part) with the security headers."""
    fragment = request.query_params.get("fragment") == "1"
    template = templates.get_template(name)
    if fragment and "live" in template.blocks:
        ctx = template.new_context({"v": who, "request": request, **context})
        html = "".join(template.blocks["live"](ctx))
    else:
        html = template.render(v=who, request=request, **context)
    response = HTMLResponse(html, status_code=status)
    secure(response, request, who.csrf)
    return response


def secure(response: Response, request: Request, csrf: str | None = None) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if csrf and request.cookies.get(CSRF_COOKIE) != csrf:
        response.set_cookie(
            CSRF_COOKIE,
            csrf,
            path=f"{root_of(request)}/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


def redirect(request: Request, location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    secure(response, request)
    return response


def query(**params: Any) -> str:
    """A query string of the given non-empty parameters."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""
