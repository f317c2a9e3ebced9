"""manager.aio: the queueing calls as coroutines that never block the caller's loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from supervisor import Job, Manager, ManagerStopped, Status, WorkerConfig

from .runtime.support import holding


@dataclass
class Note(Job):
    QUEUE = "notes"
    text: str

    def run(self, state: Any) -> None:
        pass


@pytest.fixture
def manager() -> Iterator[Manager]:
    started = WorkerConfig().start(processes=0)  # a producer: nothing runs, all is kept
    yield started
    started.stop()


def test_queue_info_many_and_schedule_are_awaited(manager: Manager) -> None:
    async def main() -> None:
        aio = manager.aio
        one = await aio.queue(Note(text="a"))
        many = await aio.queue_many([Note(text="b"), Note(text="c")])
        later = await aio.schedule(Note(text="d"), at=3600)
        assert isinstance(one, uuid.UUID) and len(set([one, *many, later])) == 4
        info = await aio.info(str(one))
        assert info is not None and info.status is Status.PENDING and info.queue == "notes"
        assert await aio.info(uuid.UUID(int=1)) is None

    asyncio.run(main())
    stats = manager.stats().queues["notes"]
    assert (stats.pending, stats.scheduled) == (4, 1)


def test_a_bad_job_is_refused_at_the_call_and_nothing_is_stored(manager: Manager) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"queue\(\) takes a job instance; got the class Note"):
            await manager.aio.queue(Note)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"field 'text' \(object\) cannot be encoded"):
            await manager.aio.queue_many([Note(text="fine"), Note(text=object())])  # type: ignore[arg-type]

    asyncio.run(main())
    assert holding(manager) == {}


def test_300_concurrent_calls_leave_the_loop_ticking(manager: Manager) -> None:
    async def main() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        ids = await asyncio.gather(*(manager.aio.queue(Note(text=str(i))) for i in range(300)))
        during = ticks - before
        done.set()
        await ticking
        assert len(set(ids)) == 300
        return during

    # Calls that blocked the loop would all run in one of its turns, with no
    # turn of the ticker between them; calls that wait off the loop let it
    # turn while the 300 round trips are under way (a count, not a time, so
    # a loaded machine does not change the answer).
    during = asyncio.run(main())
    assert during >= 10
    assert manager.stats().queues["notes"].pending == 300


def test_after_stop_every_call_says_so(manager: Manager) -> None:
    aio = manager.aio
    manager.stop()

    async def main() -> None:
        with pytest.raises(ManagerStopped, match=r"^queue\(\) on a stopped Manager"):
            await aio.queue(Note(text="late"))
        with pytest.raises(ManagerStopped, match=r"^info\(\) on a stopped Manager"):
            await aio.info(uuid.UUID(int=1))

    asyncio.run(main())
    with pytest.raises(ManagerStopped, match=r"^aio\(\)"):
        manager.aio  # noqa: B018 - the property is the call
