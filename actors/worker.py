"""Worker: one pykka actor that runs one job at a time for one queue.

Contract: on start it builds its state with the state factory (once, in its
own thread) and asks the host for a job. Each job message is run to the end,
then its completion and the request for the next job leave as one "next"
message. After Stop it runs nothing more: a job that still arrives goes back
unexecuted.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pykka

from actors.wire import FrameWriter
from storage import Job, JobResult


@dataclass(frozen=True, slots=True)
class StopWorker:
    pass


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """Its state is built: the worker is past start-up."""

    index: int


@dataclass(frozen=True, slots=True)
class WorkerStopped:
    index: int


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    index: int
    error: str


@dataclass(frozen=True, slots=True)
class Recycle:
    """Ask the arbiter to finish its jobs and be replaced."""

    reason: str


class InFlight:
    """The ids of the jobs this arbiter is running (for its heartbeat), and how
    many it has finished (for recycling)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[bytes] = set()
        self.finished = 0

    def add(self, job_id: bytes) -> None:
        with self._lock:
            self._ids.add(job_id)

    def discard(self, job_id: bytes) -> int:
        """Forget a job that ended; returns how many have ended so far."""
        with self._lock:
            self._ids.discard(job_id)
            self.finished += 1
            return self.finished

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self._ids)


def describe(exc: BaseException) -> str:
    """The exception's type, message and traceback, as stored in last_error."""
    return "".join(traceback.format_exception(exc)).rstrip()


class Worker(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        *,
        index: int,
        queue: str,
        jobs: Mapping[str, type[Job]],
        state_factory: Callable[[Any], Any],
        handle: Any,
        link: FrameWriter,
        in_flight: InFlight,
        arbiter: pykka.ActorRef[Any],
        max_jobs: int | None = None,
    ) -> None:
        super().__init__()
        self._index = index
        self._queue = queue
        self._jobs = jobs
        self._state_factory = state_factory
        self._handle = handle
        self._link = link
        self._in_flight = in_flight
        self._arbiter = arbiter
        self._max_jobs = max_jobs
        self._state: Any = None
        self._stopping = False

    def on_start(self) -> None:
        try:
            self._state = self._state_factory(self._handle)
        except BaseException as exc:
            self._stopping = True
            self._arbiter.tell(WorkerFailed(self._index, f"state factory failed: {describe(exc)}"))
            return
        self._arbiter.tell(WorkerReady(self._index))
        self._link.send(["next", self._index, self._queue, None])

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A worker that died would leave its arbiter up and running nothing:
        # the arbiter reports it and is replaced at once.
        error = "worker failed" if exception_value is None else describe(exception_value)
        self._arbiter.tell(WorkerFailed(self._index, f"worker {self._index} failed: {error}"))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StopWorker):
            self._stopping = True
            self._arbiter.tell(WorkerStopped(self._index))
            return None
        # A job: ["job", worker, id, name, args, retry_count, timeout]
        raw_id, name, args = message[2], message[3], message[4]
        if self._stopping:
            self._link.send(["done", [raw_id, "unexecuted", None]])
            return None
        result = self._run(raw_id, name, args)
        completion = [raw_id, result.outcome.value, result.error]
        if self._stopping:
            self._link.send(["done", completion])
        else:
            self._link.send(["next", self._index, self._queue, completion])
        return None

    def _run(self, raw_id: bytes, name: str, args: bytes) -> JobResult:
        job_class = self._jobs.get(name)
        if job_class is None:
            return JobResult.unregistered(
                f"no job named {name!r} is registered (job {uuid.UUID(bytes=raw_id)})"
            )
        self._in_flight.add(raw_id)
        try:
            job_class.decode_args(args).run(self._state)
        except BaseException as exc:
            # SystemExit and friends too: a job's failure, never its worker's.
            return JobResult.failure(describe(exc))
        finally:
            finished = self._in_flight.discard(raw_id)
            if self._max_jobs is not None and finished >= self._max_jobs:
                self._arbiter.tell(Recycle(f"{finished} jobs done (max_jobs_per_arbiter)"))
        return JobResult.success()
