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


def app_for(manager: Manager) -> Starlette:
    async def queue_nap(request: Request) -> JSONResponse:
        job_id = await manager.aio.queue(Nap(tag=request.path_params["tag"], seconds=0.01))
        return JSONResponse({"job": str(job_id)})

    return Starlette(routes=[Route("/naps/{tag}", queue_nap, methods=["POST"])])


async def serve_and_hit(manager: Manager) -> list[httpx.Response]:
    config = uvicorn.Config(app_for(manager), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=100)
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
    answers = asyncio.run(serve_and_hit(manager))
    assert [a.status_code for a in answers] == [200] * REQUESTS
    ids = {a.json()["job"] for a in answers}
    assert len(ids) == REQUESTS
    manager.join(timeout=60)
    ran = {f[1] for f in lines(workdir, "nap.log") if f[0] == "end"}
    assert ran == {str(i) for i in range(REQUESTS)}  # none lost
