"""Rendering the dashboard's answers: Jinja2 templates with autoescape on
(job arguments, results and errors are attacker data: every value is escaped,
none is marked safe), the security headers every answer carries, the flash
message an action leaves for the page it returns to, and where the app is
mounted (links are built from it, so the dashboard works under a prefix).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from storage.events import EventLog
from supervisor.access import Credentials
from supervisor.dashboard import views
from supervisor.fields import RequestError

__all__ = ["CSP", "HEADERS", "Handler", "Renderer", "answering", "base", "here", "secured"]

log = EventLog("dashboard")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show live figures and job data: a back button must not show stale
    # (or another login's) copies.
    "Cache-Control": "no-store",
}
FLASH_COOKIE = "jobarbiter_flash"


def base(request: Request) -> str:
    """Where the app is mounted ("" at the root, "/jobs" under Mount("/jobs"))."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def here(request: Request) -> str:
    """The request's page, relative to the mount point, with its query."""
    path = request.url.path
    root = base(request)
    if root and path.startswith(root):
        path = path[len(root) :]
    query = request.url.query
    return (path or "/") + (f"?{query}" if query else "")


def secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


class Renderer:
    """The templates, and the key that signs flash messages (so that only
    this app's answers set what a page says it did). ``credentials``: when
    the app has some, its action forms are usable, and a page tells a
    browser that sends them that it is signed in."""

    def __init__(self, *, credentials: Credentials) -> None:
        self._credentials = credentials
        self.can_change = credentials.scheme is not None
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("supervisor.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals.update(
            age=views.age, size=views.size, moment=views.moment, summary=views.summary
        )
        self._key = secrets.token_bytes(32)

    def text(self, template: str, **context: Any) -> str:
        context.setdefault("signed_in", False)
        return self._env.get_template(template).render(can_change=self.can_change, **context)

    def page(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        flash: str | None = None,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> Response:
        """A page; ``flash`` shown in #flash, else the one an action left."""
        left = self._flash_of(request)
        body = self.text(
            template,
            signed_in=self.can_change and self._credentials.refusal(request) is None,
            base=base(request),
            here=here(request),
            flash=flash if flash is not None else left,
            **context,
        )
        response = HTMLResponse(body, status_code=status, headers=dict(headers or {}))
        if left is not None:
            response.delete_cookie(FLASH_COOKIE, path=_cookie_path(request))
        return secured(response)

    def refusal(
        self,
        request: Request,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A page saying, in #flash, why the request was not done."""
        heading = _HEADINGS.get(status, "Not done")
        return self.page(
            request,
            "message.html",
            status=status,
            flash=message,
            headers=headers,
            title=heading,
            page="",
            heading=heading,
        )

    def back(self, request: Request, to: object, flash: str) -> Response:
        """303 to the page ``to`` (a path relative to the mount point, from
        the form), leaving ``flash`` for it to show."""
        target = to if isinstance(to, str) and _is_local(to) else "/"
        response = RedirectResponse(base(request) + target, status_code=303)
        response.set_cookie(
            FLASH_COOKIE,
            self._sign(flash),
            path=_cookie_path(request),
            max_age=60,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return secured(response)

    def _sign(self, message: str) -> str:
        quoted = urllib.parse.quote(message, safe="")
        return f"{quoted}.{hmac.new(self._key, quoted.encode(), hashlib.sha256).hexdigest()}"

    def _flash_of(self, request: Request) -> str | None:
        value = request.cookies.get(FLASH_COOKIE)
        if not value:
            return None
        quoted, _, signature = value.rpartition(".")
        expected = hmac.new(self._key, quoted.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return None
        return urllib.parse.unquote(quoted)


_HEADINGS = {
    400: "Bad request",
    401: "Credentials required",
    403: "Refused",
    404: "Not found",
    500: "Internal error",
    501: "Not supported here",
    503: "Stopped",
}


def _cookie_path(request: Request) -> str:
    return base(request) or "/"


def _is_local(path: str) -> bool:
    """A path on this app: never another host ("//evil", "/\\evil", "https:")."""
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return False
    return "\r" not in path and "\n" not in path


Handler = Callable[[Request], Awaitable[Response]]


def answering(renderer: Renderer, handler: Handler) -> Handler:
    """``handler``, its RequestErrors answered as a page saying why (in
    #flash), and anything else as a 500 page (logged, its text not shown:
    it may hold a job's data or a database's address)."""

    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as e:
            return renderer.refusal(request, e.status, e.message)
        except Exception as e:
            log.error(
                "dashboard request failed",
                method=request.method,
                path=request.url.path,
                error=f"{type(e).__name__}: {e}",
            )
            message = f"internal error ({type(e).__name__}); see the service's log"
            return renderer.refusal(request, 500, message)

    return answer
