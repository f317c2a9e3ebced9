"""Worker: one pykka actor, one slot of a ThreadExecutor: it runs one job at a time.

Contract: on start it builds its state with the state factory (once, in its
own thread), tells its arbiter it is ready and offers itself to its
executor. Told a job (its executor has written its Started), it runs it to
the end, says Done, and takes the executor's next buffered job (saying
Started first) until there is none. A job told after StopWorker (handed
over just as its arbiter stopped) is not run: the host puts it back
unexecuted with the rest of the runner's jobs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from actors.executor import InFlight, Retired, Running, ThreadExecutor
from actors.job_run import Recycle, describe, done, run_sync
from actors.middleware import Middleware
from actors.protocol import Deliver, Started, encode
from actors.wire import FrameWriter
from storage import Job, JobResult

__all__ = ["Recycle", "Shared", "Worker", "describe", "done"]


@dataclass(frozen=True, slots=True)
class Shared:
    """What the slots of one queue in an arbiter share, sync (Worker) or async
    (AsyncWorker): built once by the arbiter, handed to each slot."""

    executor: ThreadExecutor
    jobs: Mapping[str, type[Job]]
    link: FrameWriter
    in_flight: InFlight
    running: Running
    arbiter: pykka.ActorRef[Any]
    max_jobs: int | None = None
    middleware: tuple[Middleware, ...] = ()


@dataclass(frozen=True, slots=True)
class StopWorker:
    pass


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """Its state is built: the worker is past start-up."""

    index: int


@dataclass(frozen=True, slots=True)
class RetireWorker:
    """Its slot is scaled away: end now (it is idle)."""


@dataclass(frozen=True, slots=True)
class WorkerRetired:
    index: int


@dataclass(frozen=True, slots=True)
class WorkerStopped:
    index: int


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    index: int
    error: str


class Worker(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        *,
        index: int,
        shared: Shared,
        state_factory: Callable[[Any], Any],
        handle: Any,
    ) -> None:
        super().__init__()
        self._index = index
        self._shared = shared
        self._state_factory = state_factory
        self._handle = handle
        self._state: Any = None
        self._stopping = False

    def on_start(self) -> None:
        try:
            state = self._state_factory(self._handle)
            if inspect.isawaitable(state):
                # An async factory for a sync queue: awaited once, here.
                state = asyncio.run(_awaited(state))
            self._state = state
        except BaseException as exc:
            self._stopping = True
            self._shared.arbiter.tell(
                WorkerFailed(self._index, f"state factory failed: {describe(exc)}")
            )
            return
        self._shared.arbiter.tell(WorkerReady(self._index))
        self._shared.executor.ready(self.actor_ref)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A worker that died would leave its arbiter up and running nothing:
        # the arbiter reports it and is replaced at once.
        error = "worker failed" if exception_value is None else describe(exception_value)
        self._shared.arbiter.tell(
            WorkerFailed(self._index, f"worker {self._index} failed: {error}")
        )

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StopWorker):
            self._stopping = True
            self._shared.arbiter.tell(WorkerStopped(self._index))
            return None
        if isinstance(message, RetireWorker):
            self._retire()
            return None
        if self._stopping:
            # Handed over as the arbiter stopped, and told after StopWorker:
            # the arbiter may be gone before it ends. It never runs here; the
            # host puts it back unexecuted with the rest of this runner's jobs.
            return None
        # Told a job: the executor has announced it Started. Buffered ones the
        # worker takes itself, it announces.
        job: Deliver | Retired | None = message
        announced = True
        while isinstance(job, Deliver):
            seconds = self._execute(job, announced)
            job = self._shared.executor.finished(self.actor_ref, seconds)
            announced = False
        self._shared.link.flush()  # the last Done, and the credits it freed
        if isinstance(job, Retired):
            self._retire()
        return None

    def _retire(self) -> None:
        # Its slot was scaled away: it ends, and its arbiter forgets it.
        self._shared.arbiter.tell(WorkerRetired(self._index))
        self.stop()

    def _execute(self, job: Deliver, announced: bool) -> float:
        """Run ``job``; returns how long it ran."""
        link = self._shared.link
        if not announced:
            # Written before the job runs: a job that kills its process must
            # be known to have started, or it would go back unexecuted
            # forever. The previous job's Done and any credits leave in the
            # same write.
            link.send(encode(Started(job.job_id)), wait=True)
        started = time.perf_counter()
        result = self._run(job)
        link.buffer(done(job, result))
        return time.perf_counter() - started

    def _run(self, job: Deliver) -> JobResult:
        return run_sync(job, self._shared, self._state)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
