"""Small builders shared by the contract tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from storage import (
    Backoff,
    Claim,
    Disposition,
    JobInfo,
    JobResult,
    MaxRetries,
    NewJob,
    Policy,
    Storage,
)

QUEUE = "default"


def policy(
    *,
    retries: int | None = 5,
    backoff: Backoff | None = None,
    heartbeat: float = 5.0,
    timeout: float | None = None,
    result_ttl: float = 600.0,
) -> Policy:
    """A Policy; ``retries=None`` retries forever. Linear 1 s backoff unless
    told; ended records kept 600 s (the default) unless told."""
    return Policy(
        max_retries=MaxRetries.infinite() if retries is None else MaxRetries.count(retries),
        backoff=Backoff.linear(1.0) if backoff is None else backoff,
        heartbeat_interval=heartbeat,
        timeout=timeout,
        result_ttl=result_ttl,
    )


DEFAULT_POLICY = policy()


def new_job(
    *,
    name: str = "tests.Job",
    queue: str = QUEUE,
    args: bytes = b"\x80",
    run_at: float | None = None,
    policy: Policy = DEFAULT_POLICY,
    unique_key: str | None = None,
    priority: int = 0,
) -> NewJob:
    return NewJob(
        name=name,
        queue=queue,
        args=args,
        policy=policy,
        run_at=run_at,
        unique_key=unique_key,
        priority=priority,
    )


def ids(jobs: Iterable[JobInfo]) -> list[uuid.UUID]:
    return [job.id for job in jobs]


def utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def info(storage: Storage, job_id: uuid.UUID) -> JobInfo:
    """The job's record, which must exist."""
    found = storage.info(job_id)
    assert found is not None, f"job {job_id} is gone"
    return found


def pop_one(storage: Storage, runner: str = "r1", queue: str = QUEUE) -> Claim:
    """Pop exactly one job, which must be there."""
    jobs = storage.pop(queue, runner)
    assert len(jobs) == 1, f"expected one due job in {queue!r}, got {jobs}"
    return jobs[0]


def kill(storage: Storage, job_id: uuid.UUID, runner: str = "r1", queue: str = QUEUE) -> None:
    """Pop ``job_id`` (which must be next and have no retries left) and fail it to death."""
    job = pop_one(storage, runner, queue)
    assert job.id == job_id
    assert storage.complete(job_id, runner, JobResult.failure("fatal")) is Disposition.DEAD


# The count cap the ``capped`` fixture gives a backend that takes one.
CAP = 4
