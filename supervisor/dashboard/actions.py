"""The dashboard's actions (POST forms) and its login.

An action is refused with a 403 page saying why, and changes nothing, when
the request looks sent by another site's page (``access.cross_site``) or does
not carry the configured credentials; done, it answers 303 to the page the
form came from (its ``back`` field), which then shows what was done in #flash.

Login: with basic auth, GET /login answers 401 with a ``WWW-Authenticate:
Basic`` challenge until the browser sends the user and password, then 303 to
the overview (the browser sends them with every request after). With a
bearer token, /login is a form; POSTing the right token sets an HttpOnly,
SameSite=Strict cookie holding an HMAC of it (``Credentials.cookie``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from supervisor.access import COOKIE, Credentials, Scheme, cross_site
from supervisor.dashboard.render import Renderer, base, secured
from supervisor.fields import RequestError, fields, integer, job_id
from supervisor.operations import Operations
from supervisor.webops import call

__all__ = ["Actions"]

_Action = Callable[[Request, dict[str, Any]], Awaitable[Response]]
_Handler = Callable[[Request], Awaitable[Response]]

_COOKIE_AGE = 12 * 3600  # seconds a login cookie lasts


class Actions:
    def __init__(
        self, operations: Operations, credentials: Credentials, renderer: Renderer
    ) -> None:
        self._operations = operations
        self._credentials = credentials
        self._render = renderer

    def changing(self, action: _Action) -> _Handler:
        """``action``, refused unless the request is same-site and credited."""

        async def answer(request: Request) -> Response:
            # Refused before its body is read.
            refused = cross_site(request) or self._credentials.refusal(request)
            if refused is not None:
                raise RequestError(403, refused)
            return await action(request, await fields(request))

        return answer

    # -- queues ---------------------------------------------------------------------

    async def pause(self, request: Request, form: dict[str, Any]) -> Response:
        queue = _required(form, "queue")
        await call(self._operations.pause, queue)
        return self._render.back(request, form.get("back"), f"paused {queue}")

    async def resume(self, request: Request, form: dict[str, Any]) -> Response:
        queue = _required(form, "queue")
        await call(self._operations.resume, queue)
        return self._render.back(request, form.get("back"), f"resumed {queue}")

    async def scale(self, request: Request, form: dict[str, Any]) -> Response:
        queue = _required(form, "queue")
        count = integer(_required(form, "count"), "count")
        if count < 0:
            raise RequestError(400, f"count must be >= 0; got {count}")
        await call(self._operations.set_worker_count, queue, count)
        flash = f"scaled {queue} to {count} slot{'' if count == 1 else 's'} per arbiter"
        return self._render.back(request, form.get("back"), flash)

    # -- jobs -----------------------------------------------------------------------

    async def cancel(self, request: Request, form: dict[str, Any]) -> Response:
        job = job_id(_required(form, "job"))
        done = await call(self._operations.cancel, job)
        flash = f"cancelled {job}" if done else f"{job} was not cancelled: it had ended"
        return self._render.back(request, form.get("back"), flash)

    async def retry(self, request: Request, form: dict[str, Any]) -> Response:
        job = job_id(_required(form, "job"))
        done = await call(self._operations.requeue, job)
        flash = f"retried {job}" if done else f"{job} was not retried: it is not dead"
        return self._render.back(request, form.get("back"), flash)

    async def retry_all(self, request: Request, form: dict[str, Any]) -> Response:
        count = await call(self._operations.requeue_dead, None)
        flash = f"retried {count} dead job{'' if count == 1 else 's'}"
        return self._render.back(request, form.get("back"), flash)

    async def purge(self, request: Request, form: dict[str, Any]) -> Response:
        count = await call(self._operations.purge_dead, None)
        flash = f"purged {count} dead job{'' if count == 1 else 's'}"
        return self._render.back(request, form.get("back"), flash)

    # -- login ----------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        scheme = self._credentials.scheme
        if scheme is Scheme.BASIC:
            if self._credentials.refusal(request) is None:
                return self._render.back(request, "/", "logged in")
            return self._render.refusal(
                request,
                401,
                "credentials required: enter the dashboard's user and password",
                headers={"WWW-Authenticate": 'Basic realm="jobarbiter", charset="UTF-8"'},
            )
        return self._login_form(request)

    def _login_form(
        self, request: Request, status: int = 200, flash: str | None = None
    ) -> Response:
        scheme = self._credentials.scheme
        logged_in = scheme is Scheme.BEARER and self._credentials.refusal(request) is None
        return self._render.page(
            request,
            "login.html",
            status=status,
            flash=flash,
            title="Log in",
            page="login",
            scheme="" if scheme is None else scheme.value,
            logged_in=logged_in,
        )

    async def login(self, request: Request) -> Response:
        """The token form's POST: the cookie for the right token."""
        refused = cross_site(request)
        if refused is not None:
            raise RequestError(403, refused)
        if self._credentials.scheme is not Scheme.BEARER:
            raise RequestError(403, "this dashboard takes no token: see the login page")
        token = (await fields(request)).get("token")
        if not isinstance(token, str) or not self._credentials.token_matches(token):
            return self._login_form(request, 403, "wrong token")
        response = self._render.back(request, "/", "logged in")
        response.set_cookie(
            COOKIE,
            self._credentials.cookie(),
            path=base(request) or "/",
            max_age=_COOKIE_AGE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            raise RequestError(403, refused)
        response = self._render.back(request, "/login", "logged out")
        response.delete_cookie(COOKIE, path=base(request) or "/")
        return secured(response)


def _required(form: dict[str, Any], name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise RequestError(400, f"the form has no {name}")
    return value
