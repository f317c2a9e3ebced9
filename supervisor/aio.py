"""AsyncHandle: ``manager.aio``, the Manager's queueing calls as coroutines.

For services on asyncio (Starlette, FastAPI, aiohttp): the same calls, the
same arguments and the same errors as the Manager's, and none blocks the
caller's event loop. Arguments are checked and encoded in the caller (that
is fast, and a bad job is refused at once); the StorageActor is told, not
asked, and answers through a callback that resolves an asyncio future on the
caller's loop, after its commit, so an awaited ``queue`` is acknowledged as a
plain one is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import pykka

from actors.ops import Batch, Info, Push
from storage import Job, JobInfo, NewJob
from supervisor.errors import ManagerStopped
from supervisor.handle import job_id as parse_job_id
from supervisor.handle import new_job, new_jobs


class AsyncHandle:
    def __init__(
        self,
        storage: pykka.ActorRef[Any],
        check: Callable[[str], None],
        warn: Callable[[Sequence[NewJob]], None],
    ) -> None:
        self._storage = storage
        self._check = check  # raises ManagerStopped once the Manager stopped
        self._warn = warn  # says so when no worker of this host serves a queue

    async def queue(
        self,
        job: Job,
        *,
        queue: str | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        result_ttl: float | None = None,
        priority: int | None = None,
        after: Iterable[uuid.UUID | str] = (),
    ) -> uuid.UUID:
        """``Manager.queue``, awaited."""
        self._check("queue")
        new = new_job(
            job,
            "queue()",
            queue=queue,
            timeout=timeout,
            unique_key=unique_key,
            result_ttl=result_ttl,
            priority=priority,
            after=after,
        )
        return (await self._push([new]))[0]

    async def queue_many(
        self,
        jobs: Iterable[Job],
        *,
        after: Mapping[int, Iterable[int | uuid.UUID | str]] | None = None,
    ) -> list[uuid.UUID]:
        """``Manager.queue_many``, awaited."""
        self._check("queue_many")
        return await self._push(new_jobs(jobs, after))

    async def schedule(
        self,
        job: Job,
        at: dt.datetime | dt.timedelta | float,
        *,
        queue: str | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        result_ttl: float | None = None,
        priority: int | None = None,
        after: Iterable[uuid.UUID | str] = (),
    ) -> uuid.UUID:
        """``Manager.schedule``, awaited."""
        self._check("schedule")
        new = new_job(
            job,
            "schedule()",
            queue=queue,
            timeout=timeout,
            unique_key=unique_key,
            at=at,
            result_ttl=result_ttl,
            priority=priority,
            after=after,
        )
        return (await self._push([new]))[0]

    async def info(self, job_id: uuid.UUID | str) -> JobInfo | None:
        """``Manager.info``, awaited."""
        self._check("info")
        return cast(JobInfo | None, await self._ask(Info(parse_job_id(job_id))))

    async def _push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        self._warn(jobs)
        return cast(list[uuid.UUID], await self._ask(Push(tuple(jobs))))

    async def _ask(self, op: object) -> Any:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Any] = loop.create_future()

        def answer(answers: list[Any]) -> None:
            # On the StorageActor's thread, after its commit.
            loop.call_soon_threadsafe(_settle, answered, answers[0])

        try:
            self._storage.tell(Batch((op,), answer))
        except pykka.ActorDeadError:
            raise ManagerStopped(type(op).__name__.lower()) from None
        return await answered


def _settle(answered: asyncio.Future[Any], value: Any) -> None:
    if answered.done():
        return  # the caller gave up (cancelled)
    if isinstance(value, BaseException):
        answered.set_exception(value)
    else:
        answered.set_result(value)
