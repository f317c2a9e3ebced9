"""The operations a StorageActor understands, one frozen value each.

Send one with ``ask`` to get its answer, or many as a ``Batch`` to get all the
answers in one reply. In a Batch an operation that raised is answered with a
StorageError in its place; the others still run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from storage import JobInfo, JobResult, NewJob, Status


class Reply(Protocol):
    """Where a parked pop is answered. ``deliver`` may buffer; the actor calls
    ``flush`` once after each message it handles, so many deliveries to one
    destination leave as one write."""

    def deliver(self, token: Any, jobs: list[JobInfo]) -> None: ...

    def flush(self) -> None: ...


class StorageError(Exception):
    """An operation failed inside the StorageActor."""

    def __init__(self, op: object, cause: BaseException) -> None:
        super().__init__(f"{type(op).__name__} failed: {type(cause).__name__}: {cause}")
        self.op = op
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Push:
    jobs: tuple[NewJob, ...]


@dataclass(frozen=True, slots=True)
class Pop:
    """Claim due jobs. With ``reply`` set and nothing due, the pop is parked and
    answered through ``reply.deliver(token, jobs)`` when a job is due; its
    answer in the batch is then None."""

    queue: str
    runner: str
    limit: int = 1
    reply: Reply | None = None
    token: Any = None
    # With a reply: what cannot be served now stays parked until ``limit``
    # jobs have been delivered in all (an arbiter's credits), instead of the
    # first delivery answering it.
    keep: bool = False
    # With keep: how many of the runner's workers are idle (its latest word,
    # less what was delivered since). Parked pops with idle workers are served
    # first, so that a job never waits in one arbiter's buffer while another
    # arbiter's worker is idle. A runner's kept pops are parked as one.
    urgent: int = 0


@dataclass(frozen=True, slots=True)
class Start:
    """A delivered job began to run: its death is an attempt from now on, and
    its TIMEOUT counts from now."""

    runner: str
    job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Heartbeat:
    runner: str
    job_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class Complete:
    job_id: uuid.UUID
    runner: str
    result: JobResult


@dataclass(frozen=True, slots=True)
class Release:
    runner: str
    result: JobResult


@dataclass(frozen=True, slots=True)
class Drain:
    """The runner takes no more work: its parked pops are dropped and its later
    pops answered empty. Its completions are still accepted."""

    runner: str


@dataclass(frozen=True, slots=True)
class Retire:
    """Drain the runner, then release every job it holds with ``result``, or,
    when ``unstarted`` is given, only those it had reported Started: the
    others (an arbiter's buffer) are released with ``unstarted``."""

    runner: str
    result: JobResult
    unstarted: JobResult | None = None


@dataclass(frozen=True, slots=True)
class Info:
    job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ListJobs:
    queue: str | None = None
    status: Status | None = None
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Requeue:
    job_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class PurgeDead:
    older_than: float | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    pass


@dataclass(frozen=True, slots=True)
class DoneCounts:
    """How many jobs each runner has finished successfully."""


@dataclass(frozen=True, slots=True)
class WhenIdle:
    """Answer ``done(True)`` once no job is pending or running."""

    done: Callable[[bool], None]


@dataclass(frozen=True, slots=True)
class Unpark:
    """Withdraw the parked pops that would answer through ``reply``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Tick:
    """Look again at parked pops whose queue may have fallen due."""


@dataclass(frozen=True, slots=True)
class Batch:
    ops: tuple[object, ...]
    # Called with the answers instead of answering the ask, for senders that
    # use tell (the link readers), so they never block on the actor.
    answer: Callable[[list[Any]], None] | None = None
