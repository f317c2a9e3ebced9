"""Running one job: the rules every slot follows, sync (Worker) or async (AsyncWorker).

Contract: ``run_sync`` and ``run_async`` take one delivered job and give
its JobResult; they never raise for anything the job does. In order:

* a name no class is registered for is UNREGISTERED (put back later);
* the job's context is set (``current_job()``, see actors/context.py) and
  the job registered as running, so that a StopJob can reach it;
* middleware ``before_job`` hooks, then the arguments are decoded and
  ``run`` called (an ``async def run`` on a sync slot gets its own loop; a
  ``def run`` on an async slot a thread);
* the result: if a cancel was asked while it ran it is CANCELLED, whatever
  ``run`` did after (it may have caught the interruption and returned);
  stopped at its TIMEOUT, a failure with the timeout as its error; raised,
  a failure with the traceback; returned, a success whose value is the
  msgpack of what it returned (None: no value), or a failure naming the
  job and the type when that cannot be encoded;
* ``after_job`` hooks with the outcome, then the job is counted (and the
  arbiter recycled past ``max_jobs``).

The hot path, a job with no middleware and no stop asked, builds no
JobContext, reads no clock but one, and takes no lock beyond Running's.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from actors.context import _CURRENT, JobContext, build
from actors.executor import InFlight, JobInterrupted, Running
from actors.middleware import JobOutcome, OutcomeStatus, after, before
from actors.protocol import Deliver, Done, encode
from storage import Job, JobResult, Outcome
from storage.codec import encode as encode_value

if TYPE_CHECKING:
    from actors.worker import Shared


@dataclass(frozen=True, slots=True)
class Recycle:
    """Ask the arbiter to finish its jobs and be replaced."""

    reason: str


def describe(exc: BaseException) -> str:
    """The exception's type, message and traceback, as stored in last_error."""
    return "".join(traceback.format_exception(exc)).rstrip()


def run_sync(job: Deliver, shared: Shared, state: Any) -> JobResult:
    """Run ``job`` in the calling thread."""
    job_class = shared.jobs.get(job.name)
    if job_class is None:
        return unregistered(job, shared.in_flight)
    run = _Run(job, shared)
    running = shared.running
    try:
        running.begin(job.job_id)
        try:
            instance = run.prepare(job_class)
            if is_async(job_class):
                # An async job queued on a sync queue: its own loop, here.
                run.value = asyncio.run(cast(Coroutine[Any, Any, Any], instance.run(state)))
            else:
                run.value = instance.run(state)
        finally:
            running.end(job.job_id)
    except BaseException as exc:
        # SystemExit and friends too: a job's failure, never its worker's.
        run.error = exc
    return run.finish()


async def run_async(job: Deliver, shared: Shared, state: Any) -> JobResult:
    """Run ``job`` in the calling task, on the arbiter's loop."""
    job_class = shared.jobs.get(job.name)
    if job_class is None:
        return unregistered(job, shared.in_flight)
    task = asyncio.current_task()
    assert task is not None
    run = _Run(job, shared)
    running = shared.running
    try:
        running.begin(job.job_id, task)
        try:
            instance = run.prepare(job_class)
            if is_async(job_class):
                run.value = await cast(Coroutine[Any, Any, Any], instance.run(state))
            else:
                run.value = await asyncio.to_thread(instance.run, state)
        finally:
            running.end(job.job_id)
    except BaseException as exc:
        run.error = exc
    if task.cancelling():
        # Our stop (a TIMEOUT, a cancel), caught here or swallowed by the
        # job: the slot's task runs the next job uncancelled.
        task.uncancel()
    return run.finish()


class _Run:
    """One run of a job: what sync and async slots do before and after the
    call itself, so that each rule is written once."""

    __slots__ = ("_clock", "_ctx", "_token", "error", "job", "shared", "value")

    def __init__(self, job: Deliver, shared: Shared) -> None:
        self.job = job
        self.shared = shared
        self.value: Any = None
        self.error: BaseException | None = None
        self._clock = 0.0
        if shared.middleware:
            self._ctx: JobContext | None = build(job, time.time(), shared.running)
            self._token = _CURRENT.set(self._ctx)
        else:
            # What current_job() builds a context from, if the job asks.
            self._ctx = None
            self._token = _CURRENT.set((job, time.time(), shared.running))

    def prepare(self, job_class: type[Job]) -> Job:
        """Once the job is registered as running: the before hooks, then its
        decoded instance. Raises JobInterrupted if it was cancelled while it
        waited: it never runs."""
        running = self.shared.running
        if running.stops and running.cancelled(self.job.job_id):
            raise JobInterrupted
        if self._ctx is not None:
            self._clock = time.perf_counter()
            before(self.shared.middleware, self._ctx)
        return job_class.decode_args(self.job.args)

    def finish(self) -> JobResult:
        """The result; the after hooks see it; the job is counted."""
        job, shared = self.job, self.shared
        try:
            result = conclude(job, shared.running, self.value, self.error)
            if self._ctx is not None:
                seconds = time.perf_counter() - self._clock
                after(
                    shared.middleware, self._ctx, outcome(result, self.value, self.error, seconds)
                )
        finally:
            _CURRENT.reset(self._token)
            ran(job, shared)
        return result


def conclude(job: Deliver, running: Running, value: Any, error: BaseException | None) -> JobResult:
    """The JobResult of a job that returned ``value`` or raised ``error``."""
    stop = running.take_stop(job.job_id) if running.stops else None
    if stop is not None and stop[1]:
        return JobResult.cancelled(stop[0])  # a cancel was asked: nothing else counts
    if error is None:
        if value is None:
            return _SUCCESS
        try:
            return JobResult.success(encode_value(value))
        except Exception as exc:
            return JobResult.failure(
                f"job {job.name} ({uuid.UUID(bytes=job.job_id)}) returned a "
                f"{type(value).__qualname__}, which cannot be stored: {exc}"
            )
    if isinstance(error, JobInterrupted | asyncio.CancelledError):
        # Stopped from the host (its TIMEOUT): the reason is the error.
        return JobResult.failure(stop[0] if stop is not None else "stopped")
    return JobResult.failure(describe(error))


def outcome(
    result: JobResult, value: Any, error: BaseException | None, duration: float
) -> JobOutcome:
    """The JobOutcome middleware see for ``result``."""
    kind = result.outcome
    if kind is Outcome.SUCCESS:
        return JobOutcome(
            status=OutcomeStatus.SUCCEEDED, error=None, value=value, duration=duration
        )
    if kind is Outcome.CANCELLED:
        status = OutcomeStatus.CANCELLED
    elif isinstance(error, JobInterrupted | asyncio.CancelledError):
        status = OutcomeStatus.TIMED_OUT
    else:
        status = OutcomeStatus.FAILED
    return JobOutcome(status=status, error=result.error, value=None, duration=duration)


_SUCCESS = JobResult.success()
_WIRE = {outcome: outcome.value for outcome in Outcome}
_ASYNC: dict[type[Job], bool] = {}


def is_async(job_class: type[Job]) -> bool:
    """Whether the class's ``run`` is ``async def``: asked per job, answered once."""
    found = _ASYNC.get(job_class)
    if found is None:
        found = _ASYNC[job_class] = inspect.iscoroutinefunction(job_class.run)
    return found


def done(job: Deliver, result: JobResult) -> tuple[Any, ...]:
    """The Done of ``job``, encoded: one per job, for sync and async slots."""
    return encode(Done(job.job_id, _WIRE[result.outcome], result.error, result.value))


def unregistered(job: Deliver, in_flight: InFlight) -> JobResult:
    """The result of a job no class of this arbiter is named for: put back later."""
    in_flight.discard(job.job_id, ran=False)
    return JobResult.unregistered(
        f"no job named {job.name!r} is registered (job {uuid.UUID(bytes=job.job_id)})"
    )


def ran(job: Deliver, shared: Shared) -> None:
    """A job ran to its end (whatever the result): count it, and recycle the
    arbiter once it has run ``max_jobs``. One rule for sync and async slots."""
    finished = shared.in_flight.discard(job.job_id, ran=True)
    if shared.max_jobs is not None and finished >= shared.max_jobs:
        # Its buffer goes back now: until the arbiter reads Recycle, its
        # workers would go on taking buffered jobs past the limit.
        shared.executor.close()
        shared.arbiter.tell(Recycle(f"{finished} jobs done (max_jobs_per_arbiter)"))
