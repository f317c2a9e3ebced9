"""The operations over HTTP: an ASGI app, and a server for it in a thread.
The app serves the JSON API below, /metrics, and the web dashboard's pages
(``supervisor.dashboard``) at its root.

``app(operations)`` is a Starlette app a service can mount in its own
Starlette or FastAPI app (``Mount("/jobs", app(manager))``); ``serve`` runs
one with uvicorn in a daemon thread of the calling process, on loopback
unless told otherwise. Its answers are JSON in ``supervisor.jsonview``'s
form, and ``supervisor.http_client.HttpOperations`` is its client.

Routes (relative to where the app is mounted):

  GET  /metrics                         Prometheus text (``supervisor.metrics``);
                                        its stats are at most 1 s old
  GET  /api/stats                       jsonview.stats_json(stats())
  GET  /api/jobs?queue=&status=&name=&limit=&after=[&arguments=1]
                                        {"jobs": [...], "next": id | null}; status
                                        one of operations.LISTED, name a job's
                                        NAME, limit 1..1000 (100), ``next`` the
                                        ``after`` of the next page
  GET  /api/jobs/{id}[?arguments=1]     jsonview.job_json(info(id)); 404 if the id
                                        is unknown or malformed
  POST /api/jobs/{id}/requeue           {"requeued": bool}
  POST /api/jobs/{id}/cancel            {"cancelled": bool}
  POST /api/dead/requeue   [queue]      {"requeued": n}
  POST /api/dead/purge     [older_than] {"purged": n}   (seconds)
  POST /api/queues/{queue}/pause  [local_only]   {"queue", "paused": true, "local_only"}
  POST /api/queues/{queue}/resume [local_only]   {"queue", "paused": false, "local_only"}
  POST /api/queues/{queue}/scale  count          {"queue", "count"}

A POST's fields come from its query string and its body, a JSON object or
an ``application/x-www-form-urlencoded`` form (the body's win).

Errors are ``{"error": "..."}``: 400 for bad input (a ValueError from the
operations too), 403 for a refused POST (or ``?arguments=1`` without the
credentials), 404 for an unknown job or route
(a LookupError from the operations too), 405 for a wrong method, 501 when
the operations raise NotImplementedError (``set_worker_count`` on a storage
opened directly, which has no workers), 503 when they raise ManagerStopped,
500 for anything else (logged to ``jobarbiter.http``, its text not sent;
a KeyError is taken for a bug, not an unknown job). ``serve`` answers 421
to a request for a host name it does not serve (below).

Security (the rules live in ``supervisor.access``): GETs are open
(read-only), but for decoded job arguments (``?arguments=1``), which need
the credentials when ``auth`` was given. Every POST is refused unless
``auth`` was given and the request carries it: ``auth="token"`` takes
``Authorization: Bearer token`` (or the dashboard's login cookie),
``auth=("user", "password")`` basic auth, compared in constant time. A POST
is also refused as cross-site when its ``Sec-Fetch-Site`` is present and
neither ``same-origin`` nor ``none``, or when its ``Origin`` names another
host than its ``Host`` header, so that a page in the operator's browser
cannot use remembered credentials. ``serve`` on a loopback address also
answers only requests whose ``Host`` is a loopback name (``localhost``,
``127.0.0.1``, ``::1``): a foreign web page made to resolve to 127.0.0.1
(DNS rebinding) cannot read the GETs.

The operations block (a Manager asks its actors, a storage queries its
database), so every call runs in Starlette's thread pool
(``supervisor.webops``): the event loop of the service that mounted the app
never waits on them. A request's fields are read by ``supervisor.fields``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from storage.events import EventLog
from supervisor import jsonview
from supervisor.access import Auth, Credentials, cross_site
from supervisor.fields import (
    RequestError,
    boolean,
    fields,
    integer,
    job_id,
    listed_status,
    optional_str,
    seconds,
)
from supervisor.metrics import render as render_metrics
from supervisor.operations import Operations
from supervisor.stats import ManagerStats
from supervisor.webops import call, jobs_page

if TYPE_CHECKING:
    import uvicorn

__all__ = ["MAX_LIMIT", "STATS_TTL", "Auth", "HttpServer", "app", "serve"]

log = EventLog("http")

MAX_LIMIT = 1000  # jobs per page of /api/jobs
STATS_TTL = 1.0  # seconds a /metrics scrape reuses the stats of the one before

_Handler = Callable[[Request], Awaitable[Response]]
_Change = Callable[[Request, dict[str, Any]], Awaitable[Response]]


def app(
    operations: Operations,
    *,
    auth: Auth | None = None,
    metrics: bool = True,
    dashboard: bool = True,
) -> Starlette:
    """The HTTP API over ``operations`` (see the module docstring) and the
    web dashboard at its root (``supervisor.dashboard``); without ``metrics``
    there is no /metrics route, without ``dashboard`` no page. Raises
    ValueError for an empty token, user or password (it would let anyone in).

    ``operations`` is called from the thread pool, several calls at once: a
    Manager takes that (it asks its actors). An Operations bound to one
    thread (a storage opened directly) must be made safe so before serving."""
    credentials = Credentials(auth)
    api = _Api(operations, credentials)
    reading = api.reading
    changing = api.changing
    routes: list[BaseRoute] = [
        Route("/api/stats", reading(api.stats), methods=["GET"]),
        Route("/api/jobs", reading(api.jobs), methods=["GET"]),
        Route("/api/jobs/{id}", reading(api.job), methods=["GET"]),
        Route("/api/jobs/{id}/requeue", changing(api.requeue), methods=["POST"]),
        Route("/api/jobs/{id}/cancel", changing(api.cancel), methods=["POST"]),
        Route("/api/dead/requeue", changing(api.requeue_dead), methods=["POST"]),
        Route("/api/dead/purge", changing(api.purge_dead), methods=["POST"]),
        # Any text names a queue, "/" included: the verb is the last segment.
        Route("/api/queues/{queue:path}/pause", changing(api.pause), methods=["POST"]),
        Route("/api/queues/{queue:path}/resume", changing(api.resume), methods=["POST"]),
        Route("/api/queues/{queue:path}/scale", changing(api.scale), methods=["POST"]),
    ]
    if metrics:
        routes.insert(0, Route("/metrics", reading(api.metrics), methods=["GET"]))
    if dashboard:
        # Here, not at the top: jinja2 is needed only for the pages.
        from supervisor.dashboard import routes as pages  # noqa: PLC0415

        routes.extend(pages(operations, credentials))
    return Starlette(
        routes=routes,
        # Starlette's own 404 and 405 answer JSON too; every other exception
        # is answered in reading() and changing(), so none escapes to the app
        # that mounted this one.
        exception_handlers={HTTPException: _http_error},
    )


class _Api:
    """The routes' handlers over one Operations."""

    def __init__(self, operations: Operations, credentials: Credentials) -> None:
        self._operations = operations
        self._credentials = credentials
        self._cache = _StatsCache(operations)

    def reading(self, handler: _Handler) -> _Handler:
        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as e:
                return _error(e.status, e.message)
            except Exception as e:
                return _internal_error(request, e)

        return answer

    def changing(self, handler: _Change) -> _Handler:
        async def answer(request: Request) -> Response:
            try:
                # Refused before its body is read.
                refused = cross_site(request) or self._credentials.refusal(request)
                if refused is not None:
                    return _error(403, refused)
                return await handler(request, await fields(request))
            except RequestError as e:
                return _error(e.status, e.message)
            except Exception as e:
                return _internal_error(request, e)

        return answer

    # -- reading ----------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        body, content_type = render_metrics(await call(self._cache.get))
        return Response(body, headers={"Content-Type": content_type})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(jsonview.stats_json(await call(self._operations.stats)))

    async def jobs(self, request: Request) -> Response:
        query = request.query_params
        limit = integer(query.get("limit", "100"), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise RequestError(400, f"limit must be 1 to {MAX_LIMIT}; got {limit}")
        after = query.get("after") or None
        page, following = await jobs_page(
            self._operations,
            queue=query.get("queue") or None,
            status=listed_status(query.get("status")),
            name=query.get("name") or None,
            limit=limit,
            after=None if after is None else job_id(after),
        )
        shown = self._arguments(request)
        next_id = None if following is None else str(following)
        return JSONResponse(jsonview.jobs_json(page, arguments=shown, next_id=next_id))

    async def job(self, request: Request) -> Response:
        found = job_id(request.path_params["id"], 404)
        shown = self._arguments(request)
        info = await call(self._operations.info, found)
        if info is None:
            raise RequestError(404, f"no job {found}: never queued, or its record expired")
        return JSONResponse(jsonview.job_json(info, arguments=shown))

    def _arguments(self, request: Request) -> bool:
        """Whether to show decoded arguments: asked for, and allowed."""
        if not boolean(request.query_params.get("arguments", ""), "arguments"):
            return False
        if not self._credentials.reveals(request):
            raise RequestError(403, "arguments are shown only with credentials")
        return True

    # -- changing ---------------------------------------------------------------------

    async def requeue(self, request: Request, fields: dict[str, Any]) -> Response:
        found = job_id(request.path_params["id"], 404)
        return JSONResponse({"requeued": await call(self._operations.requeue, found)})

    async def cancel(self, request: Request, fields: dict[str, Any]) -> Response:
        found = job_id(request.path_params["id"], 404)
        return JSONResponse({"cancelled": await call(self._operations.cancel, found)})

    async def requeue_dead(self, request: Request, fields: dict[str, Any]) -> Response:
        queue = optional_str(fields.get("queue"), "queue")
        return JSONResponse({"requeued": await call(self._operations.requeue_dead, queue)})

    async def purge_dead(self, request: Request, fields: dict[str, Any]) -> Response:
        older_than = fields.get("older_than")
        age = None if older_than in (None, "") else seconds(older_than, "older_than")
        return JSONResponse({"purged": await call(self._operations.purge_dead, age)})

    async def pause(self, request: Request, fields: dict[str, Any]) -> Response:
        return await self._hold(request, fields, paused=True)

    async def resume(self, request: Request, fields: dict[str, Any]) -> Response:
        return await self._hold(request, fields, paused=False)

    async def _hold(self, request: Request, fields: dict[str, Any], *, paused: bool) -> Response:
        queue = request.path_params["queue"]
        local_only = boolean(fields.get("local_only", False), "local_only")
        change = self._operations.pause if paused else self._operations.resume
        await call(change, queue, local_only=local_only)
        return JSONResponse({"queue": queue, "paused": paused, "local_only": local_only})

    async def scale(self, request: Request, fields: dict[str, Any]) -> Response:
        queue = request.path_params["queue"]
        if fields.get("count") in (None, ""):
            raise RequestError(400, "scale needs a count (a JSON body or form field)")
        count = integer(fields["count"], "count")
        if count < 0:
            raise RequestError(400, f"count must be >= 0; got {count}")
        await call(self._operations.set_worker_count, queue, count)
        return JSONResponse({"queue": queue, "count": count})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, as JSON errors like ours."""
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        {"error": exc.detail}, status_code=exc.status_code, headers=dict(exc.headers or {})
    )


def _internal_error(request: Request, exc: Exception) -> Response:
    # The text may hold a job's data or a database's address: logged, not sent.
    log.error(
        "request failed",
        method=request.method,
        path=request.url.path,
        error=f"{type(exc).__name__}: {exc}",
    )
    return _error(500, f"internal error ({type(exc).__name__}); see the service's log")


# -- the stats /metrics shows ---------------------------------------------------------


class _StatsCache:
    """The latest stats, reused for STATS_TTL s: a scrape of a PostgreSQL-backed
    service costs a query, and several scrapers (or one impatient one) must
    not multiply it. Scrapes that come together wait for one call."""

    def __init__(self, operations: Operations, clock: Callable[[], float] = time.monotonic):
        self._operations = operations
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: ManagerStats | None = None
        self._at = -math.inf

    def get(self) -> ManagerStats:
        with self._lock:
            if self._stats is None or self._clock() - self._at >= STATS_TTL:
                self._stats = self._operations.stats()
                self._at = self._clock()
            return self._stats


# -- a server in a thread -------------------------------------------------------------


class HttpServer:
    """The API served by uvicorn in a daemon thread; ``url`` is where."""

    def __init__(self, url: str, server: uvicorn.Server, thread: threading.Thread) -> None:
        self.url = url
        self._server = server
        self._thread = thread

    def close(self, timeout: float = 10.0) -> None:
        """Stop listening, finish the requests in flight, join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("HTTP server thread did not end", url=self.url, timeout=timeout)

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpServer({self.url!r})"


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_STARTUP = 10.0  # seconds serve() waits for uvicorn to listen


def serve(
    operations: Operations,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    auth: Auth | None = None,
) -> HttpServer:
    """Serve ``app(operations, auth=auth)`` on ``host:port`` (port 0: any free
    one) from a daemon thread; returns once it listens. Raises OSError naming
    ``host:port`` when it cannot listen there (in use, say).

    uvicorn installs no signal handlers (it does so only in the main thread)
    and configures no logging: its loggers (``uvicorn.error``) are the
    application's to show. It writes no access log, without touching the
    ``uvicorn.access`` logger that a service's own uvicorn may use."""
    # Here, not at the top: a service that mounts app() in its own server
    # needs no uvicorn.
    import uvicorn  # noqa: PLC0415

    served: ASGIApp = app(operations, auth=auth)
    try:
        family, address = _address(host, port)
        sock = socket.create_server(address, family=family)
    except OSError as e:
        raise OSError(e.errno, f"cannot serve HTTP on {host}:{port}: {e.strerror or e}") from e
    if _is_loopback(host):
        served = _LoopbackHosts(served)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        served,
        http=_quiet_h11(),
        ws="none",
        log_config=None,
        # True, so that uvicorn leaves the "uvicorn.access" logger alone (with
        # False it empties it, process-wide: a service's own uvicorn would
        # lose its access log); _quiet_h11 writes none.
        access_log=True,
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # SystemExit too: uvicorn exits on a failed start-up
            failure.append(e)
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"jobarbiter-http-{bound_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + _STARTUP
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(_STARTUP)
            why = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "timed out"
            raise RuntimeError(f"HTTP server on {host}:{bound_port} did not start ({why})")
        time.sleep(0.005)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal is bracketed
    if host in ("0.0.0.0", ""):
        shown = "127.0.0.1"  # listening everywhere: reachable here on loopback
    elif host == "::":
        shown = "[::1]"
    log.info("HTTP API listening", url=f"http://{shown}:{bound_port}")
    return HttpServer(f"http://{shown}:{bound_port}", server, thread)


def _quiet_h11() -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, writing no access log."""
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415 - see serve

    class QuietH11(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False  # read per request cycle, from here

    return QuietH11


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0 to 65535; got {port!r}")
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET, (
            host,
            port,
        )
    except ValueError:
        pass
    # A name: the first address it resolves to.
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = found[0]
    return socket.AddressFamily(family), (str(sockaddr[0]), port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _LoopbackHosts:
    """Answers only requests addressed to a loopback name (against DNS rebinding)."""

    def __init__(self, inner: ASGIApp) -> None:
        self._inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = ""
            for key, value in scope["headers"]:
                if key == b"host":
                    host = value.decode("latin-1")
            try:
                name = urllib.parse.urlsplit(f"//{host}").hostname
            except ValueError:
                name = None
            if name not in _LOOPBACK_NAMES:
                refused = _error(421, f"this server answers only on loopback, not {host!r}")
                await refused(scope, receive, send)
                return
        await self._inner(scope, receive, send)
