"""A real asyncio service: a Starlette app served by uvicorn on 127.0.0.1, whose
endpoint queues a job through ``manager.aio``, under 1,000 concurrent requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from supervisor import Manager, WorkerConfig

from .jobs import Nap, lines
from .support import start

REQUESTS = 1000


class InFlight:
    """How many requests the endpoint is inside of at once, and the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0


def app_for(manager: Manager, in_flight: InFlight) -> Starlette:
    async def queue_nap(request: Request) -> JSONResponse:
        in_flight.now += 1
        in_flight.peak = max(in_flight.peak, in_flight.now)
        try:
            job_id = await manager.aio.queue(Nap(tag=request.path_params["tag"], seconds=0.01))
        finally:
            in_flight.now -= 1
        return JSONResponse({"job": str(job_id)})

    return Starlette(routes=[Route("/naps/{tag}", queue_nap, methods=["POST"])])


async def serve_and_hit(manager: Manager, in_flight: InFlight) -> list[httpx.Response]:
    app = app_for(manager, in_flight)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", backlog=REQUESTS)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    # A connection per request: all 1,000 are open and asking at once. Most of
    # this test's time is httpx's own pool matching requests to connections.
    limits = httpx.Limits(max_connections=REQUESTS)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            return await asyncio.gather(
                *(client.post(f"/naps/{i}", timeout=60) for i in range(REQUESTS))
            )
    finally:
        server.should_exit = True
        await serving


def test_every_request_is_answered_and_every_job_runs(
    workdir: Path, managers: list[Manager]
) -> None:
    config = WorkerConfig().register(Nap).set_worker_count("async", 200)
    manager = start(managers, config, processes=2)
    in_flight = InFlight()
    answers = asyncio.run(serve_and_hit(manager, in_flight))
    assert [a.status_code for a in answers] == [200] * REQUESTS
    ids = {a.json()["job"] for a in answers}
    assert len(ids) == REQUESTS
    # Many queue() calls were awaited at once: none blocked the service's loop.
    assert in_flight.peak >= REQUESTS // 10
    manager.join(timeout=60)
    ran = {f[1] for f in lines(workdir, "nap.log") if f[0] == "end"}
    assert ran == {str(i) for i in range(REQUESTS)}  # none lost
