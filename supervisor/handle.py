"""QueueHandle: how user code, and jobs themselves, put jobs in queues.

Dependencies: ``queue(job, after=[id, ...])`` (and ``schedule``) queues a
job that waits until every job named succeeded; ``queue_many(jobs,
after={position: [earlier position or id, ...]})`` gives a batch its own
edges, a job's position in ``jobs`` naming it. The ids are checked here (a
UUID or its str), the positions too; that the jobs exist is the storage's
to say (UnknownParent, a LookupError, and nothing of the batch is stored).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeGuard, cast

import pykka

from actors.ops import Push
from actors.waiters import Ended
from storage import Job, NewJob
from storage.dependencies import check_after
from supervisor import waiting


class Transport(Protocol):
    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]: ...

    def wait(self, job_id: uuid.UUID, timeout: float | None) -> Ended | None:
        """How the job ended, once it has (None: no record)."""
        ...


class StorageTransport:
    """Pushes straight to the StorageActor: the host's transport."""

    def __init__(self, storage: pykka.ActorRef[Any]) -> None:
        self._storage = storage

    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        return cast("list[uuid.UUID]", self._storage.ask(Push(tuple(jobs))))

    def wait(self, job_id: uuid.UUID, timeout: float | None) -> Ended | None:
        return waiting.ended(self._storage, job_id, timeout)


def job_id(value: uuid.UUID | str) -> uuid.UUID:
    """The job id ``value`` names: a UUID as returned by queue(), or its str form."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise ValueError(
                f"not a job id: {value!r} (expected a UUID as returned by queue())"
            ) from None
    raise TypeError(f"a job id is a UUID as returned by queue() (or its str); got {_got(value)}")


_parse_id = job_id  # for methods whose argument is named job_id


def _got(value: object) -> str:
    return f"{value!r} ({type(value).__qualname__})"


def check_job(job: object, method: str) -> Job:
    """``job`` if it is a job instance; the error says how to make one."""
    if isinstance(job, Job):
        return job
    if isinstance(job, type) and issubclass(job, Job):
        name = job.__qualname__
        raise TypeError(
            f"{method} takes a job instance; got the class {name}: "
            f"queue {name}(...) with its arguments"
        )
    raise TypeError(f"{method} takes a job instance (of a Job subclass); got {_got(job)}")


def _is_number(value: object) -> TypeGuard[float]:
    # bool is an int, but True as a duration is a slip, never meant.
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_queue_name(queue: object, what: str) -> str:
    """``queue`` if it can name a queue: a non-empty str."""
    return _named(queue, what, "a queue name")


def check_job_name(name: object, what: str) -> str:
    """``name`` if it can be a job's name (a Job class's NAME): a
    non-empty str."""
    return _named(name, what, "a job name")


def _named(value: object, what: str, kind: str) -> str:
    if isinstance(value, str) and value:
        return value
    error = ValueError if isinstance(value, str) else TypeError
    raise error(f"{what} must be {kind}, a non-empty str; got {_got(value)}")


def check_int_at_least(value: object, minimum: int, what: str, expected: str) -> None:
    # bool is an int, but True as a count is a slip, never meant.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be {expected}; got {value!r} ({type(value).__qualname__})")
    if value < minimum:
        raise ValueError(f"{what} must be {expected}; got {value!r}")


def _check_options(queue: object, timeout: object, unique_key: object) -> None:
    if queue is not None:
        check_queue_name(queue, "queue=")
    if timeout is not None and not (_is_number(timeout) and timeout > 0):
        error = ValueError if _is_number(timeout) else TypeError
        raise error(f"timeout= must be a positive number of seconds (or None); got {_got(timeout)}")
    if unique_key is not None and not isinstance(unique_key, str):
        raise TypeError(f"unique_key= must be a str (or None); got {_got(unique_key)}")


def _epoch(at: object) -> float:
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise ValueError(
                f"schedule() at= needs an aware datetime; got the naive {at!r}: "
                "give it a tzinfo (datetime.now(UTC) + ...), or pass a timedelta"
            )
        return at.timestamp()
    if isinstance(at, dt.timedelta):
        seconds = at.total_seconds()
    elif _is_number(at):
        seconds = float(at)
    else:
        raise TypeError(
            "schedule() at= takes an aware datetime, a timedelta, "
            f"or a number of seconds from now (int or float); got {_got(at)}"
        )
    if not math.isfinite(seconds):
        raise ValueError(f"schedule() at= must be a finite number of seconds; got {at!r}")
    return dt.datetime.now(dt.UTC).timestamp() + seconds


class QueueHandle:
    """Queues jobs. Arguments are encoded in the caller's thread, so a job that
    cannot be encoded raises TypeError here and nothing is stored."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def queue(
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
        """Queue one job. With ``unique_key`` (or ``UNIQUE = True`` on the job),
        a pending or running job with that key is returned instead of a new one.
        ``result_ttl`` overrides the class's RESULT_TTL for this job, and
        ``priority`` its PRIORITY (any int; among due jobs, higher first). With
        ``after`` (job ids), it waits until every one of them succeeded, and
        is cancelled if one dies or is cancelled."""
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
        return self._transport.push([new])[0]

    def queue_many(
        self,
        jobs: Iterable[Job],
        *,
        after: Mapping[int, Iterable[int | uuid.UUID | str]] | None = None,
    ) -> list[uuid.UUID]:
        """Queue many jobs in one round trip; all are checked and encoded before
        any is stored. ``after`` maps a job's position in ``jobs`` to what it
        waits for: positions of earlier jobs of the batch, or job ids."""
        return self._transport.push(new_jobs(jobs, after))

    def wait(self, job_id: uuid.UUID | str, timeout: float | None = None) -> object:
        """Block until the job ends; what its ``run`` returned. Raises as
        ``Manager.wait`` does (JobFailed, JobCancelled, JobNotFound,
        TimeoutError). Inside a job, ``wait`` on one of its parents
        (``current_job().parents``) returns at once: they all succeeded (and
        their records are kept for their RESULT_TTL)."""
        checked = _parse_id(job_id)
        return waiting.value_of(checked, self._transport.wait(checked, timeout))

    def schedule(
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
        """Queue a job to run no earlier than ``at``: an aware datetime, or a delay
        as a timedelta or in seconds (and, with ``after``, not before those
        jobs succeeded)."""
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
        return self._transport.push([new])[0]


_NOW = object()


def new_job(
    job: object,
    method: str,
    *,
    queue: str | None = None,
    timeout: float | None = None,
    unique_key: str | None = None,
    at: object = _NOW,
    result_ttl: float | None = None,
    priority: int | None = None,
    after: Iterable[uuid.UUID | str] = (),
) -> NewJob:
    """What one ``queue()`` or ``schedule()`` (given ``at``) stores: checked and
    encoded in the caller, so nothing is stored for a job that cannot go."""
    checked = check_job(job, method)
    _check_options(queue, timeout, unique_key)
    parents = parent_ids(after, f"{method} after=")
    run_at = None if at is _NOW else _epoch(at)
    new = checked.to_new(
        queue=queue,
        run_at=run_at,
        timeout=timeout,
        unique_key=unique_key,
        result_ttl=result_ttl,
        priority=priority,
    )
    return new._replace(after=parents) if parents else new


def parent_ids(after: object, what: str) -> tuple[uuid.UUID, ...]:
    """The job ids ``after`` names (UUIDs or their str forms)."""
    if after == ():
        return ()  # the default, on every queue() call: nothing to check
    if isinstance(after, str | uuid.UUID) or not isinstance(after, Iterable):
        raise TypeError(f"{what} takes an iterable of job ids; got {_got(after)}")
    return tuple(job_id(parent) for parent in after)


def new_jobs(
    jobs: Iterable[Job], after: Mapping[int, Iterable[int | uuid.UUID | str]] | None = None
) -> list[NewJob]:
    """What one ``queue_many()`` stores: every job checked and encoded first,
    and ``after``'s edges checked (positions earlier in the batch, or ids)."""
    if isinstance(jobs, Job):
        raise TypeError(
            f"queue_many() takes an iterable of jobs; got one {type(jobs).__qualname__}: "
            "queue it with queue()"
        )
    new = [check_job(job, f"queue_many() (at index {i})").to_new() for i, job in enumerate(jobs)]
    if after is None:
        return new
    if not isinstance(after, Mapping):
        raise TypeError(
            "queue_many() after= maps a job's position in the batch to what it waits "
            f"for (earlier positions or job ids); got {_got(after)}"
        )
    for position, parents in after.items():
        if isinstance(position, bool) or not isinstance(position, int):
            raise TypeError(f"queue_many() after= keys are positions (int); got {_got(position)}")
        if not 0 <= position < len(new):
            raise ValueError(
                f"queue_many() after= names position {position}, but the batch holds "
                f"{len(new)} jobs (positions 0 to {len(new) - 1})"
            )
        if isinstance(parents, str | uuid.UUID | int) or not isinstance(parents, Iterable):
            raise TypeError(
                f"queue_many() after[{position}] takes an iterable of earlier positions or "
                f"job ids; got {_got(parents)}"
            )
        named = tuple(
            p if isinstance(p, int) and not isinstance(p, bool) else job_id(p)  # type: ignore[arg-type]
            for p in parents
        )
        check_after(named, position)
        new[position] = new[position]._replace(after=named)
    return new
