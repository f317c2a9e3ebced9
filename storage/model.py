"""The values storage takes and gives: new jobs, job records, results."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from storage.codec import decode
from storage.ids import id_time
from storage.policy import Backoff, MaxRetries, Policy

# The priorities a job may have: those a signed 64-bit integer holds, as
# every backend stores them (SQLite INTEGER, PostgreSQL bigint).
PRIORITY_RANGE = range(-(2**63), 2**63)


class Status(enum.Enum):
    PENDING = "pending"  # waiting for its run_at, or due and not yet taken
    RUNNING = "running"  # held by a runner
    DEAD = "dead"  # out of retries; kept until requeued or purged
    SUCCEEDED = "succeeded"  # ended well; its record is kept for its result_ttl
    CANCELLED = "cancelled"  # cancelled before or while it ran; kept for its result_ttl
    # Queued after parents (``NewJob.after``) that have not all succeeded yet:
    # live work, never claimed; pending once the last parent succeeds.
    WAITING = "waiting"


class NewJob(NamedTuple):
    """A job about to be stored. ``run_at=None`` means now. Among the due
    jobs of a queue a higher ``priority`` is claimed first (any int in
    PRIORITY_RANGE; see ``Job.PRIORITY``). A NamedTuple: one is made per job
    queued.

    ``after`` names the job's parents: it waits (Status.WAITING) until every
    one of them succeeded. A UUID is a stored job; an int is the position of
    an earlier job of the same ``push_many`` call (see storage/dependencies.py).
    """

    name: str
    queue: str
    args: bytes
    policy: Policy
    run_at: float | None = None
    unique_key: str | None = None
    priority: int = 0
    after: tuple[uuid.UUID | int, ...] = ()


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A stored job as it stands. Times are aware UTC datetimes."""

    id: uuid.UUID
    name: str
    queue: str
    args: bytes
    retry_count: int
    max_retries: MaxRetries
    backoff: Backoff
    run_at: dt.datetime
    heartbeat_interval: float
    timeout: float | None
    status: Status
    last_error: str | None
    runner: str | None
    enqueued_at: dt.datetime
    unique_key: str | None = None
    # What a succeeded ``run`` returned, msgpack-encoded (None for None); see
    # ``value()``.
    result: bytes | None = None
    # When its latest attempt began: None before it first ran, and for a job
    # cancelled while it waited (no attempt of it ended it).
    started_at: dt.datetime | None = None
    # When it ended (succeeded, died or was cancelled); None while live.
    finished_at: dt.datetime | None = None
    # Until when a succeeded or cancelled record is kept; None for live and
    # dead jobs (dead ones are kept until requeued or purged).
    expires_at: dt.datetime | None = None
    # Among the due jobs of its queue, a higher priority is claimed first.
    priority: int = 0
    # The jobs it was queued after (``NewJob.after``), in the order given.
    parents: tuple[uuid.UUID, ...] = ()

    @property
    def attempts(self) -> int:
        """Attempts started: the failed ones, plus the one running or the one
        that ended it."""
        ran_to_end = self.status is Status.SUCCEEDED or (
            self.status is Status.CANCELLED and self.started_at is not None
        )
        return self.retry_count + (self.status is Status.RUNNING or ran_to_end)

    @property
    def ended(self) -> bool:
        """Whether it will never run again (unless a dead job is requeued)."""
        return self.status in _ENDED

    def value(self) -> object:
        """The value ``run`` returned, decoded (None until it succeeded)."""
        if self.result is None:
            return None
        return decode(self.result)

    def arguments(self) -> dict[str, Any]:
        """The job's arguments, decoded from ``args``: its fields by name, as
        ``Job.encode_args`` stored them (datetimes, dates, UUIDs and
        timedeltas come back as such), for an operator to read; the job's
        class is not needed. Raises ValueError when ``args`` is not a
        msgpack map (a job pushed by hand with other bytes).
        """
        try:
            decoded = decode(self.args)
        except Exception as exc:  # msgpack raises several kinds for bad bytes
            raise ValueError(f"job {self.id}: its args are not msgpack: {exc}") from exc
        if not isinstance(decoded, dict):
            raise ValueError(
                f"job {self.id}: its args are a msgpack {type(decoded).__name__}, not a map"
            )
        return decoded

    @classmethod
    def stored(
        cls,
        *,
        id: uuid.UUID,
        name: str,
        queue: str,
        args: bytes,
        policy: Policy,
        retry_count: int,
        run_at_us: int,
        status: Status,
        last_error: str | None,
        runner: str | None,
        unique_key: str | None,
        result: bytes | None = None,
        started_us: int | None = None,
        finished_us: int | None = None,
        expires_us: int | None = None,
        priority: int = 0,
        parents: tuple[uuid.UUID, ...] = (),
    ) -> JobInfo:
        """The record of a stored job, as every backend keeps one: times in µs
        since the epoch, and the enqueue time read from its UUIDv7 id."""
        return cls(
            id=id,
            name=name,
            queue=queue,
            args=args,
            retry_count=retry_count,
            max_retries=policy.max_retries,
            backoff=policy.backoff,
            run_at=dt.datetime.fromtimestamp(run_at_us / 1_000_000, dt.UTC),
            heartbeat_interval=policy.heartbeat_interval,
            timeout=policy.timeout,
            status=status,
            last_error=last_error,
            runner=runner,
            enqueued_at=dt.datetime.fromtimestamp(id_time(id.int), dt.UTC),
            unique_key=unique_key,
            result=result,
            started_at=_at(started_us),
            finished_at=_at(finished_us),
            expires_at=_at(expires_us),
            priority=priority,
            parents=parents,
        )


def _at(us: int | None) -> dt.datetime | None:
    return None if us is None else dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)


_ENDED = frozenset({Status.SUCCEEDED, Status.CANCELLED, Status.DEAD})


class Claim(NamedTuple):
    """A job ``pop`` handed to a runner: what running it takes. The rest of
    its record is ``info()``'s; a claim is made per job on the hot path, so
    it is a NamedTuple and carries no times."""

    id: uuid.UUID
    name: str
    queue: str
    args: bytes
    retry_count: int
    timeout: float | None
    parents: tuple[uuid.UUID, ...] = ()  # what ``current_job().parents`` gives


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # an attempt that counts against MAX_RETRIES
    UNEXECUTED = "unexecuted"  # never started (shutdown): put back unchanged
    UNREGISTERED = "unregistered"  # no runner knows the name: put back later
    CANCELLED = "cancelled"  # stopped by a cancel: never retried


@dataclass(frozen=True, slots=True)
class JobResult:
    """How one attempt ended; ``value`` is what a successful ``run`` returned,
    msgpack-encoded (None when it returned None)."""

    outcome: Outcome
    error: str | None = None
    value: bytes | None = None

    @classmethod
    def success(cls, value: bytes | None = None) -> JobResult:
        return _SUCCESS if value is None else cls(Outcome.SUCCESS, None, value)

    @classmethod
    def cancelled(cls, reason: str) -> JobResult:
        return cls(Outcome.CANCELLED, reason)

    @classmethod
    def failure(cls, error: str) -> JobResult:
        return cls(Outcome.FAILURE, error)

    @classmethod
    def unexecuted(cls) -> JobResult:
        return _UNEXECUTED

    @classmethod
    def unregistered(cls, error: str) -> JobResult:
        return cls(Outcome.UNREGISTERED, error)


_SUCCESS = JobResult(Outcome.SUCCESS)
_UNEXECUTED = JobResult(Outcome.UNEXECUTED)


class Disposition(enum.Enum):
    """What became of a job that was completed or released."""

    FINISHED = "finished"  # succeeded: its record is kept for its result_ttl
    CANCELLED = "cancelled"  # cancelled: never runs again
    RETRYING = "retrying"  # failed, pending again after its backoff
    DEAD = "dead"  # failed with no retries left
    REQUEUED = "requeued"  # unexecuted or unregistered, pending again
    NOT_HELD = "not_held"  # that runner does not hold that job: nothing changed


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts of one queue's jobs. ``scheduled`` is the part of ``pending``
    that is not due yet and has never failed (``schedule()`` for later):
    what ``join`` does not wait for. A retry waiting out its backoff is
    pending, not scheduled. ``oldest_due_at`` is the earliest ``run_at``
    (epoch seconds) among the pending jobs that are due now, None when none
    is: how long the oldest job ready to run has waited for a runner.

    ``estimated`` names the counts (of ``ESTIMABLE``) that are estimates,
    not exact: a backend may estimate a count only above its ``count_cap``
    (see ``storage.counts``), so a small count is always exact,
    and whether ``pending == scheduled`` (nothing due or retrying) is always
    right. Empty: every count is exact. ``waiting`` counts the jobs waiting
    for their parents (Status.WAITING): live work, not part of ``pending``.

    ``pending_by_priority`` splits ``pending`` by priority level, highest
    first, one entry per level present (none when nothing is pending): a
    read-only mapping (see ``by_priority``). Its figures add up to
    ``pending`` unless either is estimated; "pending_by_priority" is in
    ``estimated`` when a figure of it is. It is left out of ``==``: compare
    it by itself."""

    pending: int
    running: int
    dead: int
    scheduled: int = 0
    oldest_due_at: float | None = None
    estimated: frozenset[str] = frozenset()
    waiting: int = 0
    # Not compared nor hashed: a mapping has no hash, and QueueStats stays a
    # hashable value whose == means the same counts as before the split.
    pending_by_priority: Mapping[int, int] = field(default_factory=lambda: NO_LEVELS, compare=False)


# The counts of QueueStats that a backend may estimate.
ESTIMABLE = frozenset({"pending", "running", "dead", "scheduled", "waiting", "pending_by_priority"})

NO_LEVELS: Mapping[int, int] = MappingProxyType({})


def by_priority(counts: Iterable[tuple[int, int]]) -> Mapping[int, int]:
    """A read-only mapping of (priority, count) pairs, highest priority first
    (a level given twice keeps its last count)."""
    ordered = dict(sorted(counts, key=_level, reverse=True))
    return MappingProxyType(ordered) if ordered else NO_LEVELS


def _level(pair: tuple[int, int]) -> int:
    return pair[0]
