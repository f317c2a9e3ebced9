"""AsyncWorker: one slot of a queue whose jobs are ``async def run``, on the arbiter's loop.

Contract: an arbiter that serves async queues runs one asyncio event loop, in
one thread (``EventLoop``). Each slot of such a queue is an AsyncWorker: a
plain object, not a thread, so a queue of 1,000 slots costs 1,000 small
objects and no thread. It speaks to its ThreadExecutor and its arbiter as a
Worker actor does (``tell`` a Deliver, StopWorker or RetireWorker; it reports
WorkerReady, WorkerStopped, WorkerRetired, WorkerFailed), so credits, the
buffer, graceful stop, scaling and recycling are the sync queues' own.

A queue's state is built once per arbiter, on the loop (``QueueState``):
awaited if the factory is ``async def``, called there if not, and shared by
the queue's slots, so that its jobs can share an aiohttp session or an
asyncpg pool. A job past its TIMEOUT is cancelled (``CancelledError`` inside
it) and fails with the timeout as its error; one that blocks the loop
instead is stopped by killing its arbiter, as a sync job that ignores its
``JobInterrupted``. A sync job queued on an async queue runs in a thread
(``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from actors.executor import Retired
from actors.job_run import run_async
from actors.protocol import Deliver, Started, encode
from actors.wire import FrameWriter
from actors.worker import (
    RetireWorker,
    Shared,
    StopWorker,
    WorkerFailed,
    WorkerReady,
    WorkerRetired,
    WorkerStopped,
    describe,
    done,
)
from storage import JobResult

BLOCKED_AFTER = 1.0  # seconds the loop may not turn before the watchdog says so


class EventLoop:
    """The arbiter's one asyncio loop, running in a daemon thread of its own,
    with a watchdog: a loop that has not turned for ``blocked_after`` seconds
    is reported (``on_blocked(job, seconds)``, once per stall) with the job
    found running on it."""

    def __init__(
        self,
        on_blocked: Callable[[str | None, float], None],
        blocked_after: float = BLOCKED_AFTER,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._to_flush: list[FrameWriter] = []  # see flush_soon
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="jobarbiter-loop", daemon=True
        )
        self._thread.start()
        self._on_blocked = on_blocked
        self._blocked_after = blocked_after
        self._turned = time.monotonic()
        threading.Thread(target=self._watch, name="jobarbiter-loop-watchdog", daemon=True).start()

    def _watch(self) -> None:
        reported = False
        while True:
            time.sleep(self._blocked_after / 4)
            stalled = time.monotonic() - self._turned
            if stalled < self._blocked_after:
                reported = False
            elif not reported:
                reported = True
                self._on_blocked(self._blocker(), round(stalled, 3))
            self.loop.call_soon_threadsafe(self._turn)

    def _turn(self) -> None:
        self._turned = time.monotonic()

    def _blocker(self) -> str | None:
        """The job whose code the loop's thread is in, as 'name id'."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        while frame is not None:
            job = frame.f_locals.get("job")
            if frame.f_code is AsyncWorker._run.__code__ and isinstance(job, Deliver):
                return f"{job.name} {uuid.UUID(bytes=job.job_id)}"
            frame = frame.f_back
        return None

    def flush_soon(self, link: FrameWriter) -> None:
        """Flush ``link`` once the loop has run what is ready now (on the
        loop only): the Done of every job that ended in one turn of the
        loop leaves in one write, not one each."""
        if link not in self._to_flush:
            self._to_flush.append(link)
            if len(self._to_flush) == 1:
                self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        links, self._to_flush = self._to_flush, []
        for link in links:
            link.flush()

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, from any thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class QueueState:
    """One async queue's state in this arbiter, built once, on the loop."""

    def __init__(self, factory: Callable[[Any], Any], handle: Any) -> None:
        self._factory = factory
        self._handle = handle
        self._built: asyncio.Future[Any] | None = None

    async def get(self) -> Any:
        if self._built is None:
            self._built = asyncio.get_running_loop().create_future()
            try:
                state = self._factory(self._handle)
                if inspect.isawaitable(state):
                    state = await state
            except BaseException as exc:
                self._built.set_exception(exc)
            else:
                self._built.set_result(state)
        return await asyncio.shield(self._built)


class AsyncWorker:
    """One async slot; every method but ``tell`` and ``start`` runs on the loop."""

    def __init__(
        self,
        *,
        index: int,
        shared: Shared,
        state: QueueState,
        loop: EventLoop,
    ) -> None:
        self._index = index
        self._shared = shared
        self._state_source = state
        self._loop = loop
        self._state: Any = None
        self._busy = False
        self._stopping = False

    # -- from any thread ----------------------------------------------------------

    def start(self) -> None:
        self._loop.submit(self._start())

    def tell(self, message: Any) -> None:
        self._loop.call(self._receive, message)

    # -- on the loop -----------------------------------------------------------------

    async def _start(self) -> None:
        try:
            self._state = await self._state_source.get()
        except BaseException as exc:
            self._stopping = True
            self._shared.arbiter.tell(
                WorkerFailed(self._index, f"state factory failed: {describe(exc)}")
            )
            return
        self._shared.arbiter.tell(WorkerReady(self._index))
        self._shared.executor.ready(self)

    def _receive(self, message: Any) -> None:
        if isinstance(message, StopWorker):
            self._stopping = True
            if not self._busy:
                self._shared.arbiter.tell(WorkerStopped(self._index))
        elif isinstance(message, RetireWorker):
            self._shared.arbiter.tell(WorkerRetired(self._index))
        elif isinstance(message, Deliver) and not self._stopping:
            # One told after StopWorker never runs (as for a sync worker).
            self._busy = True
            self._loop.loop.create_task(self._chain(message))

    async def _chain(self, first: Deliver) -> None:
        job: Deliver | Retired | None = first
        announced = True  # by the executor, which handed it over
        while isinstance(job, Deliver):
            seconds = await self._execute(job, announced)
            job = self._shared.executor.finished(self, seconds)
            announced = False
        self._loop.flush_soon(self._shared.link)  # the last Done, and the credits it freed
        self._busy = False
        if isinstance(job, Retired):
            self._shared.arbiter.tell(WorkerRetired(self._index))
        elif self._stopping:
            self._shared.arbiter.tell(WorkerStopped(self._index))

    async def _execute(self, job: Deliver, announced: bool) -> float:
        """Run ``job``; returns how long it ran."""
        if not announced:
            # Written before the job runs, as for a sync job: a job that
            # kills its process must be known to have started.
            self._shared.link.send(encode(Started(job.job_id)), wait=True)
        started = time.perf_counter()
        result = await self._run(job)
        self._shared.link.buffer(done(job, result))
        return time.perf_counter() - started

    async def _run(self, job: Deliver) -> JobResult:
        # A frame the watchdog looks for: it names the job blocking the loop.
        return await run_async(job, self._shared, self._state)
