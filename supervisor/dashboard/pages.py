"""The dashboard's pages (GET): overview, arbiters, jobs, a job, dead jobs,
schedules; the overview's live JSON; the two static files. Every value they
show comes from the operations, is formatted by ``views`` and escaped by the
templates.
"""

from __future__ import annotations

import importlib.resources
import urllib.parse
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from storage import JobInfo, Status
from supervisor.access import Credentials
from supervisor.dashboard import views
from supervisor.dashboard.render import Renderer, base, secured
from supervisor.fields import RequestError, boolean, integer, job_id, listed_status
from supervisor.operations import LISTED, Operations
from supervisor.webops import call, jobs_page

__all__ = ["PAGE_SIZE", "Pages"]

PAGE_SIZE = 50  # jobs per page of /jobs and /dead, unless ?limit= says
MAX_PAGE = 500

_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_JOB_FIELDS = (
    "id",
    "name",
    "queue",
    "status",
    "priority",
    "attempts",
    "retry_count",
    "max_retries",
    "run_at",
    "enqueued_at",
    "started_at",
    "finished_at",
    "runner",
    "unique_key",
)


class Pages:
    def __init__(
        self, operations: Operations, credentials: Credentials, renderer: Renderer
    ) -> None:
        self._operations = operations
        self._credentials = credentials
        self._render = renderer
        folder = importlib.resources.files("supervisor.dashboard") / "static"
        self._static = {name: (folder / name).read_bytes() for name in _STATIC}

    async def overview(self, request: Request) -> Response:
        stats = await call(self._operations.stats)
        rows = [
            {"name": name, "cells": views.overview_cells(q), "workers": q.workers}
            for name, q in stats.queues.items()
        ]
        return self._render.page(
            request,
            "overview.html",
            title="Overview",
            page="overview",
            rows=rows,
            chart=views.chart(stats),
            width=views.CHART_WIDTH,
            height=views.CHART_HEIGHT,
        )

    async def live(self, request: Request) -> Response:
        """The overview's figures for its script: each queue's cells, and
        its whole row (for a queue the page has no row for yet)."""
        stats = await call(self._operations.stats)
        queues = []
        for name, q in stats.queues.items():
            cells = views.overview_cells(q)
            row = self._render.text(
                "_queue_row.html",
                base=base(request),
                here="/",
                name=name,
                cells=cells,
                workers=q.workers,
            )
            queues.append({"name": name, "cells": views.live_cells(cells), "row": row})
        chart = views.chart(stats)
        return secured(
            JSONResponse(
                {
                    "queues": queues,
                    "chart": {
                        "available": chart.available,
                        "points": chart.points,
                        "label": chart.label,
                    },
                }
            )
        )

    async def arbiters(self, request: Request) -> Response:
        stats = await call(self._operations.stats)
        return self._render.page(
            request, "arbiters.html", title="Arbiters", page="arbiters", arbiters=stats.arbiters
        )

    async def jobs(self, request: Request) -> Response:
        query = request.query_params
        chosen = {
            "queue": query.get("queue") or None,
            "status": listed_status(query.get("status")),
            "name": query.get("name") or None,
        }
        shown = {k: v for k, v in chosen.items() if v is not None}
        found, next_url = await self._page(request, "/jobs", chosen, shown)
        return self._render.page(
            request,
            "jobs.html",
            title="Jobs",
            page="jobs",
            statuses=LISTED,
            jobs=found,
            next_url=next_url,
            queue=chosen["queue"],
            filter_status=chosen["status"],
            name=chosen["name"],
        )

    async def dead(self, request: Request) -> Response:
        found, next_url = await self._page(
            request, "/dead", {"queue": None, "status": "dead", "name": None}, {}
        )
        return self._render.page(
            request, "dead.html", title="Dead", page="dead", jobs=found, next_url=next_url
        )

    async def _page(
        self,
        request: Request,
        path: str,
        chosen: dict[str, str | None],
        shown: dict[str, str],
    ) -> tuple[list[JobInfo], str | None]:
        """A keyset page of the ``chosen`` jobs, and the link to the next one
        (None: this is the last), which repeats the ``shown`` filters."""
        query = request.query_params
        limit = integer(query.get("limit", str(PAGE_SIZE)), "limit")
        if not 1 <= limit <= MAX_PAGE:
            raise RequestError(400, f"limit must be 1 to {MAX_PAGE}; got {limit}")
        after = query.get("after") or None
        found, following = await jobs_page(
            self._operations,
            queue=chosen["queue"],
            status=chosen["status"],
            name=chosen["name"],
            limit=limit,
            after=None if after is None else job_id(after),
        )
        if following is None:
            return found, None
        kept = dict(shown)
        if "limit" in query:
            kept["limit"] = str(limit)
        kept["after"] = str(following)
        return found, f"{base(request)}{path}?{urllib.parse.urlencode(kept)}"

    async def job(self, request: Request) -> Response:
        found = job_id(request.path_params["id"], 404)
        info = await call(self._operations.info, found)
        if info is None:
            raise RequestError(404, f"no job {found}: never queued, or its record expired")
        arguments = None
        if boolean(request.query_params.get("arguments", ""), "arguments"):
            if not self._credentials.reveals(request):
                raise RequestError(403, "arguments are shown only with credentials: log in")
            arguments = _arguments(info)
        return self._render.page(
            request,
            "job.html",
            title=f"job {found}",
            page="job",
            job=info,
            fields=[(name, _job_field(info, name)) for name in _JOB_FIELDS],
            result=_result(info),
            arguments=arguments,
            cancellable=info.status in (Status.PENDING, Status.RUNNING),
            needs_login=self._credentials.scheme is not None,
        )

    async def schedules(self, request: Request) -> Response:
        stats = await call(self._operations.stats)
        return self._render.page(
            request,
            "schedules.html",
            title="Schedules",
            page="schedules",
            schedules=stats.schedules,
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self._static:
            raise RequestError(404, f"no static file {name!r}")
        response = Response(self._static[name], media_type=_STATIC[name])
        secured(response)
        # Its own cache rule: the files change only with the package.
        response.headers["Cache-Control"] = "public, max-age=300"
        return response


def _job_field(info: JobInfo, name: str) -> str:
    value: Any = getattr(info, name)
    if name == "max_retries":
        return "infinite" if info.max_retries.limit is None else str(info.max_retries.limit)
    if name == "status":
        return info.status.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if name.endswith("_at"):
        return views.moment(value)
    return "—" if value is None else str(value)


def _result(info: JobInfo) -> str:
    if info.result is None:
        return ""
    try:
        return views.pretty(info.value())
    except Exception as e:  # msgpack raises several kinds for bad bytes
        return f"(not decodable: {type(e).__name__}: {e})"


def _arguments(info: JobInfo) -> str:
    try:
        return views.pretty(info.arguments())
    except ValueError as e:
        return f"(not decodable: {e})"
