"""The operations a StorageActor understands, one frozen value (a NamedTuple) each.

Send one with ``ask`` to get its answer, or many as a ``Batch`` to get all the
answers in one reply. In a Batch an operation that raised is answered with a
StorageError in its place; the others still run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from actors.tally import QueueTally
from storage import Claim, JobResult, NewJob, QueueStats, Status


class Reply(Protocol):
    """Where a parked pop is answered. ``deliver`` may buffer; the actor calls
    ``flush`` once after each message it handles, so many deliveries to one
    destination leave as one write."""

    def deliver(self, token: Any, jobs: list[Claim]) -> None: ...

    def flush(self) -> None: ...


class StorageError(Exception):
    """An operation failed inside the StorageActor."""

    def __init__(self, op: object, cause: BaseException) -> None:
        super().__init__(f"{type(op).__name__} failed: {type(cause).__name__}: {cause}")
        self.op = op
        self.cause = cause


class Push(NamedTuple):
    jobs: tuple[NewJob, ...]


class PushTick(NamedTuple):
    """Queue ``job`` as the tick ``tick_us`` of ``schedule`` (Storage.push_tick):
    answered with its id, or None when that tick was queued already."""

    schedule: str
    tick_us: int
    job: NewJob


class LastTick(NamedTuple):
    """The newest tick (µs) queued for ``schedule``, or None."""

    schedule: str


class Pop(NamedTuple):
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


class Start(NamedTuple):
    """A delivered job began to run: its death is an attempt from now on, and
    its TIMEOUT counts from now."""

    runner: str
    job_id: uuid.UUID


class Heartbeat(NamedTuple):
    runner: str
    job_ids: tuple[uuid.UUID, ...]


class Complete(NamedTuple):
    job_id: uuid.UUID
    runner: str
    result: JobResult
    # What the link saw, for the host's tally: the job's queue, its run time
    # and, for a first attempt, its wait from enqueue to start (seconds).
    queue: str | None = None
    ran: float | None = None
    waited: float | None = None


class Release(NamedTuple):
    runner: str
    result: JobResult


class Drain(NamedTuple):
    """The runner takes no more work: its parked pops are dropped and its later
    pops answered empty. Its completions are still accepted."""

    runner: str


class Retire(NamedTuple):
    """Drain the runner, then release every job it holds with ``result``, or,
    when ``unstarted`` is given, only those it had reported Started: the
    others (an arbiter's buffer) are released with ``unstarted``."""

    runner: str
    result: JobResult
    unstarted: JobResult | None = None
    # What its link heard Started and not Done (a job without a TIMEOUT
    # never reaches the actor as a Start).
    started: tuple[uuid.UUID, ...] = ()


class Info(NamedTuple):
    job_id: uuid.UUID


class ListJobs(NamedTuple):
    """``Storage.list``: records in id order, from just past ``after``."""

    queue: str | None = None
    status: Status | None = None
    scheduled: bool | None = None
    after: uuid.UUID | None = None
    limit: int = 100
    name: str | None = None


class Requeue(NamedTuple):
    job_id: uuid.UUID


class PurgeDead(NamedTuple):
    older_than: float | None = None


class Stats(NamedTuple):
    pass


class Pause(NamedTuple):
    """Hold ``queue`` (``paused``) or release it: stored, so that every host
    sharing the storage obeys it and it outlives a restart, unless
    ``local_only`` (this host alone, until it stops)."""

    queue: str
    paused: bool
    local_only: bool = False


class HostFigures(NamedTuple):
    """Answered with a Figures: what ``stats()`` needs of the storage and of
    this host's tally, read at one moment."""


class Figures(NamedTuple):
    stored: dict[str, QueueStats]
    paused_stored: frozenset[str]
    paused_here: frozenset[str]  # held by this host alone
    tally: dict[str, QueueTally]
    now: float  # the storage's clock
    # Whether ``tally`` is a host's: a storage opened directly has none, so
    # its queues have no recent endings to chart (not "none ended").
    tallied: bool = False


class DoneCounts(NamedTuple):
    """How many jobs each runner has finished successfully."""


class WhenIdle(NamedTuple):
    """Answer ``done(True)`` once no job is pending or running."""

    done: Callable[[bool], None]


class Unpark(NamedTuple):
    """Withdraw the parked pops that would answer through ``reply``."""

    reply: Reply


class WaitFor(NamedTuple):
    """Call ``waiter(job_id, ended)`` once each job has ended (actors/waiters.py):
    at once for one that already has, or that has no record."""

    job_ids: tuple[uuid.UUID, ...]
    waiter: Callable[[uuid.UUID, Any], None]


class Unwait(NamedTuple):
    """Withdraw ``waiter`` (a wait that timed out)."""

    job_ids: tuple[uuid.UUID, ...]
    waiter: Callable[[uuid.UUID, Any], None]


class Cancel(NamedTuple):
    """Cancel a job: answered with the status it had and, if it is running,
    the runner that holds it (for the Manager to stop it)."""

    job_id: uuid.UUID
    reason: str


class EndedElsewhere(NamedTuple):
    """A shared storage says another host ended these jobs."""

    job_ids: tuple[uuid.UUID, ...]


class Tick(NamedTuple):
    """Look again at parked pops whose queue may have fallen due."""


class Batch(NamedTuple):
    ops: tuple[object, ...]
    # Called with the answers instead of answering the ask, for senders that
    # use tell (the link readers), so they never block on the actor.
    answer: Callable[[list[Any]], None] | None = None
