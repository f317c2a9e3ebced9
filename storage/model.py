"""The values storage takes and gives: new jobs, job records, results."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from storage.ids import id_time
from storage.policy import Backoff, MaxRetries, Policy


class Status(enum.Enum):
    PENDING = "pending"  # waiting for its run_at, or due and not yet taken
    RUNNING = "running"  # held by a runner
    DEAD = "dead"  # out of retries; kept until requeued or purged


class NewJob(NamedTuple):
    """A job about to be stored. ``run_at=None`` means now. A NamedTuple:
    one is made per job queued."""

    name: str
    queue: str
    args: bytes
    policy: Policy
    run_at: float | None = None
    unique_key: str | None = None


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
        )


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


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"  # an attempt that counts against MAX_RETRIES
    UNEXECUTED = "unexecuted"  # never started (shutdown): put back unchanged
    UNREGISTERED = "unregistered"  # no runner knows the name: put back later


@dataclass(frozen=True, slots=True)
class JobResult:
    outcome: Outcome
    error: str | None = None

    @classmethod
    def success(cls) -> JobResult:
        return _SUCCESS

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

    FINISHED = "finished"  # succeeded and removed
    RETRYING = "retrying"  # failed, pending again after its backoff
    DEAD = "dead"  # failed with no retries left
    REQUEUED = "requeued"  # unexecuted or unregistered, pending again
    NOT_HELD = "not_held"  # that runner does not hold that job: nothing changed


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts of one queue's jobs. ``scheduled`` is the part of ``pending``
    that is not due yet and has never failed (``schedule()`` for later):
    what ``join`` does not wait for. A retry waiting out its backoff is
    pending, not scheduled."""

    pending: int
    running: int
    dead: int
    scheduled: int = 0
