"""The web dashboard: server-rendered pages over an Operations, mounted by
``supervisor.http.app`` at its root next to ``/api`` and ``/metrics``.

Pages (GET; every link relative to where the app is mounted):

  /                 overview: each queue's counts, pause, slots, oldest due
                    job's age and recent jobs/s, and a chart of jobs/s over the
                    last minutes; its script polls /live/overview every second
  /arbiters         pid, state, RSS, CPU, restarts, recycles, last exit and
                    error, and the jobs in flight with how long each has run
  /jobs             filtered by queue, status and name; keyset pages (?after=)
  /jobs/{id}        one job: attempts, times, last error with its traceback,
                    result; its arguments only with ?arguments=1
  /dead             dead jobs, keyset pages; retry one or all, purge
  /schedules        this host's recurring schedules with their next run
  /login            basic auth's challenge, or the token's form

Actions are POST forms to /actions/{pause,resume,scale,cancel,retry,
retry-all,purge} (``actions``): without credentials configured the dashboard
is read-only. Every answer carries a strict Content-Security-Policy (no
inline script or style), ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: same-origin``; every value is escaped (``render``).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from supervisor.access import Credentials
from supervisor.dashboard.actions import Actions
from supervisor.dashboard.pages import Pages
from supervisor.dashboard.render import Handler, Renderer, answering
from supervisor.operations import Operations

__all__ = ["routes"]


def routes(operations: Operations, credentials: Credentials) -> list[BaseRoute]:
    """The dashboard's routes over ``operations``, for ``http.app`` to mount."""
    renderer = Renderer(credentials=credentials)
    pages = Pages(operations, credentials, renderer)
    actions = Actions(operations, credentials, renderer)

    def get(path: str, handler: Handler) -> Route:
        return Route(path, answering(renderer, handler), methods=["GET"])

    def post(path: str, handler: Handler) -> Route:
        return Route(path, answering(renderer, handler), methods=["POST"])

    changing = actions.changing
    return [
        get("/", pages.overview),
        get("/live/overview", pages.live),
        get("/arbiters", pages.arbiters),
        get("/jobs", pages.jobs),
        get("/jobs/{id}", pages.job),
        get("/dead", pages.dead),
        get("/schedules", pages.schedules),
        get("/static/{name}", pages.static),
        get("/login", actions.login_page),
        post("/login", actions.login),
        post("/logout", actions.logout),
        post("/actions/pause", changing(actions.pause)),
        post("/actions/resume", changing(actions.resume)),
        post("/actions/scale", changing(actions.scale)),
        post("/actions/cancel", changing(actions.cancel)),
        post("/actions/retry", changing(actions.retry)),
        post("/actions/retry-all", changing(actions.retry_all)),
        post("/actions/purge", changing(actions.purge)),
    ]
