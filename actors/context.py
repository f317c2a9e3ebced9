"""The job context: what a running job can learn about itself.

Contract: while a job's ``run`` runs in an arbiter, ``current_job()``
returns its JobContext, a frozen value: its id, name, queue, attempt (its
retry count: 0 on the first run), when it was queued (read from its UUIDv7
id), its deadline when a TIMEOUT applies, and its parents (the ids it was
queued after, each of which succeeded before it could start). ``cancelled`` is the one live
part: it turns True once a cancel was asked for the job, so that a job in a
loop can check it and stop cleanly. Outside a running job ``current_job()``
raises RuntimeError: a None would only fail later, further from the slip.

The context lives in a ContextVar, so it is right in each worker thread,
each asyncio task on the arbiter's loop, and in the thread a sync job on an
async queue runs in (``asyncio.to_thread`` copies the context). A job
without middleware gets no JobContext built at all unless it asks: the
runtime sets the ContextVar to the job's raw delivery and ``current_job``
builds the value from it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from storage.dependencies import unpack
from storage.ids import id_time, uuid_from_bytes


class CancelState(Protocol):
    """Where the runtime keeps which jobs a cancel was asked for."""

    def cancelled(self, job_id: bytes) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """The running job, as ``current_job()`` gives it. Times are aware UTC datetimes."""

    id: uuid.UUID
    name: str
    queue: str
    attempt: int  # the retry count: 0 on the first run
    enqueued_at: dt.datetime
    deadline: dt.datetime | None = None  # when its TIMEOUT ends it, if it has one
    # The jobs it was queued after (``after=``), in the order given: all
    # succeeded, so ``wait`` on each returns its value at once.
    parents: tuple[uuid.UUID, ...] = ()
    _state: CancelState | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """Whether a cancel was asked for this job (read live, not frozen)."""
        state = self._state
        return state is not None and state.cancelled(self.id.bytes)


# Either a JobContext (built for middleware) or the raw parts one is built
# from on demand: (Deliver, wall-clock start, CancelState).
_CURRENT: ContextVar[Any] = ContextVar("jobarbiter_current_job", default=None)


def current_job() -> JobContext:
    """The JobContext of the job running in this thread or task.

    Raises RuntimeError when called outside a running job."""
    current = _CURRENT.get()
    if current is None:
        raise RuntimeError("current_job() called outside a running job")
    if isinstance(current, JobContext):
        return current
    job, started, state = current
    return build(job, started, state)


def build(job: Any, started: float, state: CancelState | None) -> JobContext:
    """The JobContext of ``job`` (a protocol Deliver) that started at ``started``
    (epoch seconds)."""
    job_id = uuid_from_bytes(job.job_id)
    timeout = job.timeout
    return JobContext(
        id=job_id,
        name=job.name,
        queue=job.queue,
        attempt=job.retry_count,
        enqueued_at=dt.datetime.fromtimestamp(id_time(job_id.int), dt.UTC),
        deadline=None if timeout is None else dt.datetime.fromtimestamp(started + timeout, dt.UTC),
        parents=unpack(job.parents),
        _state=state,
    )
