"""Waiting for jobs to end: what ``Manager.wait`` and ``Manager.as_completed`` do.

Both register with the StorageActor (``WaitFor``), which calls back once a job
has ended (actors/waiters.py), and block on that answer only: nothing polls.
A job that ended before the call is answered at once from its kept record;
an id with no record is answered at once too, as ``JobNotFound``, so no wait
is ever silent on an unknown id. A wait that times out withdraws itself.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pykka

from actors.ops import Unwait, WaitFor
from actors.waiters import Ended
from storage import Status
from supervisor.errors import JobCancelled, JobFailed, JobNotFound


def value_of(job_id: uuid.UUID, end: Ended | None) -> object:
    """The value a job returned; raises how it ended otherwise."""
    if end is None:
        raise JobNotFound(job_id)
    if end.status is Status.SUCCEEDED:
        return end.value()
    if end.status is Status.CANCELLED:
        raise JobCancelled(job_id, end.error)
    raise JobFailed(job_id, end.error)


class _One:
    """The answer of one wait."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.end: Ended | None = None

    def __call__(self, job_id: uuid.UUID, end: Ended | None) -> None:
        self.end = end
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)


def wait(storage: pykka.ActorRef[Any], job_id: uuid.UUID, timeout: float | None) -> object:
    """Block until ``job_id`` ends; its value, or what ``value_of`` raises."""
    return value_of(job_id, ended(storage, job_id, timeout))


def ended(storage: pykka.ActorRef[Any], job_id: uuid.UUID, timeout: float | None) -> Ended | None:
    """Block until ``job_id`` ends; how it ended (None: it has no record)."""
    one = _One()
    storage.ask(WaitFor((job_id,), one))
    if not one.wait(timeout):
        storage.tell(Unwait((job_id,), one))
        # It may have ended between the timeout and the withdrawal.
        if not one.wait(0):
            raise TimeoutError(f"job {job_id} did not end within {timeout:g} s")
    return one.end


def as_completed(
    storage: pykka.ActorRef[Any], job_ids: Iterable[uuid.UUID], timeout: float | None
) -> Iterator[tuple[uuid.UUID, Ended]]:
    """Yield ``(id, ended)`` as each job ends, in the order they end.

    Raises JobNotFound when it reaches an id with no record, and TimeoutError
    once ``timeout`` seconds (in all) have passed with jobs still live.
    """
    wanted = list(dict.fromkeys(job_ids))
    if not wanted:
        return
    answers: queue.SimpleQueue[tuple[uuid.UUID, Ended | None]] = queue.SimpleQueue()

    def waiter(job_id: uuid.UUID, end: Ended | None) -> None:
        answers.put((job_id, end))

    left = set(wanted)
    deadline = None if timeout is None else time.monotonic() + timeout
    storage.ask(WaitFor(tuple(wanted), waiter))
    try:
        while left:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                job_id, end = answers.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(
                    f"{len(left)} of {len(wanted)} jobs did not end within {timeout:g} s"
                ) from None
            left.discard(job_id)
            if end is None:
                raise JobNotFound(job_id)
            yield job_id, end
    finally:
        if left:
            storage.tell(Unwait(tuple(left), waiter))
