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

from actors.context import _CURRENT, build
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
    running = shared.running
    middleware = shared.middleware
    if middleware:
        ctx = build(job, time.time(), running)
        token = _CURRENT.set(ctx)
    else:
        # What current_job() builds a context from, if the job asks.
        token = _CURRENT.set((job, time.time(), running))
    value: Any = None
    error: BaseException | None = None
    try:
        running.begin(job.job_id)
        try:
            if running.stops and running.cancelled(job.job_id):
                raise JobInterrupted  # cancelled before it began: it never runs
            if middleware:
                clock = time.perf_counter()
                before(middleware, ctx)
            instance = job_class.decode_args(job.args)
            if is_async(job_class):
                # An async job queued on a sync queue: its own loop, here.
                value = asyncio.run(cast(Coroutine[Any, Any, Any], instance.run(state)))
            else:
                value = instance.run(state)
        finally:
            running.end(job.job_id)
    except BaseException as exc:
        # SystemExit and friends too: a job's failure, never its worker's.
        error = exc
    try:
        result = conclude(job, running, value, error)
        if middleware:
            after(middleware, ctx, outcome(result, value, error, time.perf_counter() - clock))
    finally:
        _CURRENT.reset(token)
        ran(job, shared)
    return result


async def run_async(job: Deliver, shared: Shared, state: Any) -> JobResult:
    """Run ``job`` in the calling task, on the arbiter's loop."""
    job_class = shared.jobs.get(job.name)
    if job_class is None:
        return unregistered(job, shared.in_flight)
    task = asyncio.current_task()
    assert task is not None
    running = shared.running
    middleware = shared.middleware
    if middleware:
        ctx = build(job, time.time(), running)
        token = _CURRENT.set(ctx)
    else:
        # What current_job() builds a context from, if the job asks.
        token = _CURRENT.set((job, time.time(), running))
    value: Any = None
    error: BaseException | None = None
    try:
        running.begin(job.job_id, task)
        try:
            if running.stops and running.cancelled(job.job_id):
                raise JobInterrupted  # cancelled before it began: it never runs
            if middleware:
                clock = time.perf_counter()
                before(middleware, ctx)
            instance = job_class.decode_args(job.args)
            if is_async(job_class):
                value = await cast(Coroutine[Any, Any, Any], instance.run(state))
            else:
                value = await asyncio.to_thread(instance.run, state)
        finally:
            running.end(job.job_id)
    except BaseException as exc:
        error = exc
    if task.cancelling():
        # Our stop (a TIMEOUT, a cancel), caught here or swallowed by the
        # job: the slot's task runs the next job uncancelled.
        task.uncancel()
    try:
        result = conclude(job, running, value, error)
        if middleware:
            after(middleware, ctx, outcome(result, value, error, time.perf_counter() - clock))
    finally:
        _CURRENT.reset(token)
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
