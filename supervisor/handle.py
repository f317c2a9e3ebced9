"""QueueHandle: how user code, and jobs themselves, put jobs in queues."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, cast

import pykka

from actors.ops import Push
from storage import Job, NewJob


class Transport(Protocol):
    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]: ...


class StorageTransport:
    """Pushes straight to the StorageActor: the host's transport."""

    def __init__(self, storage: pykka.ActorRef[Any]) -> None:
        self._storage = storage

    def push(self, jobs: Sequence[NewJob]) -> list[uuid.UUID]:
        return cast("list[uuid.UUID]", self._storage.ask(Push(tuple(jobs))))


def _epoch(at: dt.datetime | dt.timedelta) -> float:
    if isinstance(at, dt.timedelta):
        return dt.datetime.now(dt.UTC).timestamp() + at.total_seconds()
    if at.tzinfo is None:
        raise ValueError("schedule needs an aware datetime (or a timedelta from now)")
    return at.timestamp()


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
    ) -> uuid.UUID:
        """Queue one job. With ``unique_key`` (or ``UNIQUE = True`` on the job),
        a pending or running job with that key is returned instead of a new one."""
        new = job.to_new(queue=queue, timeout=timeout, unique_key=unique_key)
        return self._transport.push([new])[0]

    def queue_many(self, jobs: Iterable[Job]) -> list[uuid.UUID]:
        """Queue many jobs in one round trip; all are encoded before any is stored."""
        return self._transport.push([job.to_new() for job in jobs])

    def schedule(
        self,
        job: Job,
        at: dt.datetime | dt.timedelta,
        *,
        queue: str | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
    ) -> uuid.UUID:
        """Queue a job to run no earlier than ``at`` (an aware datetime, or a delay)."""
        new = job.to_new(queue=queue, run_at=_epoch(at), timeout=timeout, unique_key=unique_key)
        return self._transport.push([new])[0]
