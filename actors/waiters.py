"""Waiters: who waits for which job to end, resolved as the StorageActor settles jobs.

The StorageActor owns one ``Waiters``. A waiter is a callback registered for a
job id; it is called once, from the actor's thread and after the commit that
stored the end, with the job's ``Ended`` (or None: no such job, or its record
expired). Nothing polls: an end is noticed where the actor settles a job
(a completion, a release, a cancel), or when a shared storage says that
another host ended it. A waiter for a job that has already ended is called as
soon as it is added.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from storage import Disposition, JobInfo, JobResult, Status
from storage.codec import decode

_ENDED = frozenset({Status.SUCCEEDED, Status.DEAD, Status.CANCELLED})
_STATUS = {
    Disposition.FINISHED: Status.SUCCEEDED,
    Disposition.DEAD: Status.DEAD,
    Disposition.CANCELLED: Status.CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Ended:
    """How a job ended: ``status`` is SUCCEEDED, DEAD or CANCELLED; ``error``
    is its last error (a dead job's traceback, a cancel's reason); ``result``
    is what a succeeded ``run`` returned, msgpack-encoded (None for None)."""

    job_id: uuid.UUID
    status: Status
    error: str | None = None
    result: bytes | None = None

    def value(self) -> object:
        """What ``run`` returned, decoded (None unless it succeeded)."""
        return None if self.result is None else decode(self.result)

    @classmethod
    def of(cls, info: JobInfo) -> Ended | None:
        """The end a record shows, or None while the job is live."""
        if info.status not in _ENDED:
            return None
        return cls(info.id, info.status, info.last_error, info.result)

    @classmethod
    def settled(cls, job_id: uuid.UUID, result: JobResult, how: Disposition) -> Ended | None:
        """The end a settlement made, or None if the job lives on."""
        status = _STATUS.get(how)
        if status is None:
            return None
        if status is Status.SUCCEEDED:
            return cls(job_id, status, None, result.value)
        return cls(job_id, status, result.error)


Waiter = Callable[[uuid.UUID, Ended | None], None]


class Waiters:
    """Callbacks per job id; see the module docstring. Not thread-safe: the
    StorageActor's thread only."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, list[Waiter]] = {}
        self._ended: list[tuple[uuid.UUID, Ended | None]] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def add(self, job_id: uuid.UUID, waiter: Waiter, info: JobInfo | None) -> None:
        """Wait for ``job_id``, whose record is ``info`` now."""
        if info is None:
            self._ended.append((job_id, None))
            self._waiting.setdefault(job_id, []).append(waiter)
            return
        self._waiting.setdefault(job_id, []).append(waiter)
        end = Ended.of(info)
        if end is not None:
            self._ended.append((job_id, end))

    def remove(self, job_id: uuid.UUID, waiter: Waiter) -> None:
        """Stop waiting (a wait that timed out)."""
        waiters = self._waiting.get(job_id)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[job_id]

    def settled(self, job_id: uuid.UUID, result: JobResult, how: Disposition) -> None:
        """A job was settled ``how``; its waiters are told if it has ended."""
        if job_id in self._waiting:
            end = Ended.settled(job_id, result, how)
            if end is not None:
                self._ended.append((job_id, end))

    def wanted(self, job_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """Those of ``job_ids`` somebody waits for."""
        return [job_id for job_id in job_ids if job_id in self._waiting]

    def ended(self, job_id: uuid.UUID, end: Ended) -> None:
        """``job_id`` is known to have ended (another host's word, read back)."""
        if job_id in self._waiting:
            self._ended.append((job_id, end))

    def forget_ended(self) -> None:
        """The ends noted since the last commit did not last (it failed)."""
        self._ended = [(job_id, end) for job_id, end in self._ended if end is None]

    def resolve(self) -> None:
        """Call the waiters of the jobs that ended; after the commit."""
        if not self._ended:
            return
        ended, self._ended = self._ended, []
        for job_id, end in ended:
            for waiter in self._waiting.pop(job_id, ()):
                waiter(job_id, end)
