"""The operations over HTTP: an ASGI app, and a server for it in a thread.

``app(operations)`` is a Starlette app a service can mount in its own
Starlette or FastAPI app (``Mount("/jobs", app(manager))``); ``serve`` runs
one with uvicorn in a daemon thread of the calling process, on loopback
unless told otherwise. Its answers are JSON in ``supervisor.jsonview``'s
form, and ``supervisor.http_client.HttpOperations`` is its client.

Routes (relative to where the app is mounted):

  GET  /metrics                         Prometheus text (``supervisor.metrics``);
                                        its stats are at most 1 s old
  GET  /api/stats                       jsonview.stats_json(stats())
  GET  /api/jobs?queue=&status=&limit=&after=[&arguments=1]
                                        {"jobs": [...], "next": id | null}; status
                                        one of operations.LISTED, limit 1..1000
                                        (100), ``next`` the ``after`` of the next page
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
operations too), 403 for a refused POST, 404 for an unknown job or route
(a LookupError from the operations too), 405 for a wrong method, 501 when
the operations raise NotImplementedError (``set_worker_count`` on a storage
opened directly, which has no workers), 503 when they raise ManagerStopped,
500 for anything else (logged to ``jobarbiter.http``, its text not sent;
a KeyError is taken for a bug, not an unknown job). ``serve`` answers 421
to a request for a host name it does not serve (below).

Security: GETs are open (read-only). Every POST is refused unless ``auth``
was given and the request carries it: ``auth="token"`` takes
``Authorization: Bearer token``, ``auth=("user", "password")`` basic auth,
compared in constant time. A POST is also refused as cross-site when its
``Sec-Fetch-Site`` is present and neither ``same-origin`` nor ``none``, or
when its ``Origin`` names another host than its ``Host`` header, so that a
page in the operator's browser cannot use remembered credentials. ``serve``
on a loopback address also answers only requests whose ``Host`` is a
loopback name (``localhost``, ``127.0.0.1``, ``::1``): a foreign web page
made to resolve to 127.0.0.1 (DNS rebinding) cannot read the GETs.

The operations block (a Manager asks its actors, a storage queries its
database), so every call runs in Starlette's thread pool: the event loop of
the service that mounted the app never waits on them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import math
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from storage.events import EventLog
from supervisor import jsonview
from supervisor.errors import ManagerStopped
from supervisor.metrics import render as render_metrics
from supervisor.operations import LISTED, Operations
from supervisor.stats import ManagerStats

if TYPE_CHECKING:
    import uvicorn

__all__ = ["MAX_LIMIT", "STATS_TTL", "Auth", "HttpServer", "app", "serve"]

log = EventLog("http")

# A bearer token, or a (user, password) pair for basic auth.
Auth = str | tuple[str, str]

MAX_LIMIT = 1000  # jobs per page of /api/jobs
STATS_TTL = 1.0  # seconds a /metrics scrape reuses the stats of the one before

_T = TypeVar("_T")
_Handler = Callable[[Request], Awaitable[Response]]
_Change = Callable[[Request, dict[str, Any]], Awaitable[Response]]


class _AnswerError(Exception):
    """Answer the request with ``{"error": message}`` and ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def app(
    operations: Operations,
    *,
    auth: Auth | None = None,
    metrics: bool = True,
) -> Starlette:
    """The HTTP API over ``operations`` (see the module docstring); without
    ``metrics`` there is no /metrics route. Raises ValueError for an empty
    token, user or password (it would let anyone in).

    ``operations`` is called from the thread pool, several calls at once: a
    Manager takes that (it asks its actors). An Operations bound to one
    thread (a storage opened directly) must be made safe so before serving."""
    api = _Api(operations, _Credentials(auth))
    reading = api.reading
    changing = api.changing
    routes = [
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
    return Starlette(
        routes=routes,
        # Starlette's own 404 and 405 answer JSON too; every other exception
        # is answered in reading() and changing(), so none escapes to the app
        # that mounted this one.
        exception_handlers={HTTPException: _http_error},
    )


class _Api:
    """The routes' handlers over one Operations."""

    def __init__(self, operations: Operations, credentials: _Credentials) -> None:
        self._operations = operations
        self._credentials = credentials
        self._cache = _StatsCache(operations)

    @staticmethod
    async def _call(func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``func`` on a worker thread; the exceptions it may raise for a
        reason the caller can act on, as answers."""
        try:
            return await run_in_threadpool(func, *args, **kwargs)
        except ManagerStopped as e:
            raise _AnswerError(503, str(e)) from None
        except NotImplementedError as e:
            raise _AnswerError(501, str(e) or "not supported by these operations") from None
        except ValueError as e:
            raise _AnswerError(400, str(e)) from None
        except LookupError as e:
            if isinstance(e, KeyError):
                raise  # a bug's, most likely: a 500
            raise _AnswerError(404, str(e)) from None

    def reading(self, handler: _Handler) -> _Handler:
        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except _AnswerError as e:
                return _error(e.status, e.message)
            except Exception as e:
                return _internal_error(request, e)

        return answer

    def changing(self, handler: _Change) -> _Handler:
        async def answer(request: Request) -> Response:
            try:
                # Refused before its body is read.
                refused = _cross_site(request) or self._credentials.refusal(request)
                if refused is not None:
                    return _error(403, refused)
                return await handler(request, await _fields(request))
            except _AnswerError as e:
                return _error(e.status, e.message)
            except Exception as e:
                return _internal_error(request, e)

        return answer

    # -- reading ----------------------------------------------------------------------

    async def metrics(self, request: Request) -> Response:
        body, content_type = render_metrics(await self._call(self._cache.get))
        return Response(body, headers={"Content-Type": content_type})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(jsonview.stats_json(await self._call(self._operations.stats)))

    async def jobs(self, request: Request) -> Response:
        query = request.query_params
        status = query.get("status") or None
        if status is not None and status not in LISTED:
            raise _AnswerError(400, f"status must be one of {', '.join(LISTED)}; got {status!r}")
        limit = _int(query.get("limit", "100"), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise _AnswerError(400, f"limit must be 1 to {MAX_LIMIT}; got {limit}")
        after = query.get("after") or None
        if after is not None:
            after = str(_uuid(after, 400))
        shown = _bool(query.get("arguments", ""), "arguments")
        # One more than a page: whether another page follows is then known.
        found = await self._call(
            self._operations.jobs, query.get("queue") or None, status, limit=limit + 1, after=after
        )
        page = found[:limit]
        following = str(page[-1].id) if len(found) > limit else None
        return JSONResponse(jsonview.jobs_json(page, arguments=shown, next_id=following))

    async def job(self, request: Request) -> Response:
        job_id = _uuid(request.path_params["id"], 404)
        shown = _bool(request.query_params.get("arguments", ""), "arguments")
        info = await self._call(self._operations.info, job_id)
        if info is None:
            raise _AnswerError(404, f"no job {job_id}: never queued, or its record expired")
        return JSONResponse(jsonview.job_json(info, arguments=shown))

    # -- changing ---------------------------------------------------------------------

    async def requeue(self, request: Request, fields: dict[str, Any]) -> Response:
        job_id = _uuid(request.path_params["id"], 404)
        return JSONResponse({"requeued": await self._call(self._operations.requeue, job_id)})

    async def cancel(self, request: Request, fields: dict[str, Any]) -> Response:
        job_id = _uuid(request.path_params["id"], 404)
        return JSONResponse({"cancelled": await self._call(self._operations.cancel, job_id)})

    async def requeue_dead(self, request: Request, fields: dict[str, Any]) -> Response:
        queue = _optional_str(fields.get("queue"), "queue")
        return JSONResponse({"requeued": await self._call(self._operations.requeue_dead, queue)})

    async def purge_dead(self, request: Request, fields: dict[str, Any]) -> Response:
        older_than = fields.get("older_than")
        seconds = None if older_than in (None, "") else _seconds(older_than, "older_than")
        return JSONResponse({"purged": await self._call(self._operations.purge_dead, seconds)})

    async def pause(self, request: Request, fields: dict[str, Any]) -> Response:
        return await self._hold(request, fields, paused=True)

    async def resume(self, request: Request, fields: dict[str, Any]) -> Response:
        return await self._hold(request, fields, paused=False)

    async def _hold(self, request: Request, fields: dict[str, Any], *, paused: bool) -> Response:
        queue = request.path_params["queue"]
        local_only = _bool(fields.get("local_only", False), "local_only")
        change = self._operations.pause if paused else self._operations.resume
        await self._call(change, queue, local_only=local_only)
        return JSONResponse({"queue": queue, "paused": paused, "local_only": local_only})

    async def scale(self, request: Request, fields: dict[str, Any]) -> Response:
        queue = request.path_params["queue"]
        if fields.get("count") in (None, ""):
            raise _AnswerError(400, "scale needs a count (a JSON body or form field)")
        count = _int(fields["count"], "count")
        if count < 0:
            raise _AnswerError(400, f"count must be >= 0; got {count}")
        await self._call(self._operations.set_worker_count, queue, count)
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


# -- refusing POSTs -------------------------------------------------------------------


class _Credentials:
    """What a POST must carry: a bearer token, or basic auth's user and password."""

    def __init__(self, auth: Auth | None) -> None:
        self._scheme: str | None = None
        self._secret = b""
        if auth is None:
            return
        if isinstance(auth, str):
            if not auth:
                raise ValueError("auth token is empty: it would let anyone in")
            self._scheme, self._secret = "bearer", auth.encode()
        elif isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(s, str) for s in auth):
            user, password = auth
            if not user or not password:
                raise ValueError("auth user and password must both be non-empty")
            if ":" in user:
                raise ValueError("a basic-auth user name cannot contain ':'")
            self._scheme, self._secret = "basic", f"{user}:{password}".encode()
        else:
            raise TypeError("auth is a token (str) or a (user, password) tuple of str")

    def refusal(self, request: Request) -> str | None:
        """Why the request may not change anything, or None."""
        if self._scheme is None:
            return "read-only: this API takes no POST unless it was given auth"
        given = request.headers.get("authorization")
        if given is None:
            return "credentials required (Authorization header)"
        scheme, _, value = given.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != self._scheme:
            return f"wrong credentials (expected {self._scheme.title()} auth)"
        if self._scheme == "basic":
            try:
                presented = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return "wrong credentials"
        else:
            presented = value.encode()
        # In constant time: how much of a guess matches must not show in how
        # long it takes to refuse it.
        if not hmac.compare_digest(presented, self._secret):
            return "wrong credentials"
        return None


def _cross_site(request: Request) -> str | None:
    """Why the request looks sent by another site's page, or None."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    origin = request.headers.get("origin")
    if origin is not None and not _same_host(origin, request.headers.get("host", "")):
        return f"cross-site request refused (Origin {origin} is not this host)"
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _same_host(origin: str, host: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(origin)
        served = urllib.parse.urlsplit(f"//{host}")
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or not served.hostname:
            return False  # "null", a file: page, no Host: nothing to match
        default = _DEFAULT_PORTS[parts.scheme]
        return (parts.hostname, parts.port or default) == (
            served.hostname,
            served.port or default,
        )
    except ValueError:  # a port that is no number
        return False


# -- reading a request ----------------------------------------------------------------


async def _fields(request: Request) -> dict[str, Any]:
    """A POST's fields: its query string, then its JSON or form body."""
    fields: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body.strip():
        return fields
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _AnswerError(400, f"body is not JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise _AnswerError(400, "a JSON body must be an object")
        fields.update(parsed)
    elif content_type == "application/x-www-form-urlencoded":
        try:
            fields.update(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise _AnswerError(400, "form body is not UTF-8") from None
    else:
        raise _AnswerError(
            400, "a body must be application/json or application/x-www-form-urlencoded"
        )
    return fields


def _uuid(text: str, status: int) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _AnswerError(status, f"not a job id: {text!r}") from None


def _int(value: object, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    raise _AnswerError(400, f"{name} must be an integer; got {value!r}")


def _seconds(value: object, name: str) -> float:
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            seconds = float(value)
    if seconds is None or not (math.isfinite(seconds) and seconds >= 0):
        raise _AnswerError(400, f"{name} must be a number of seconds >= 0; got {value!r}")
    return seconds


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise _AnswerError(400, f"{name} must be true or false; got {value!r}")


def _optional_str(value: object, name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise _AnswerError(400, f"{name} must be a string; got {value!r}")


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
